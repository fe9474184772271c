// Command mailintake-dev-idp serves the fake Microsoft identity platform on loopback for local
// trials of the o365 provider, and a fake of Google's OAuth endpoints under /google for the google
// provider (never for production: they sign in anyone they know).
//
//	mailintake-dev-idp --listen 127.0.0.1:7470 --user help@contoso.onmicrosoft.com:secret --google-user help@example.com
//
// Device-code sign-ins are approved by opening http://ADDR/approve?code=USER_CODE&user=UPN. Google
// sign-ins are approved at once, as the account the sign-in URL names (login_hint); the key of a
// service account with domain-wide delegation for https://mail.google.com/ is written to a file.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailintake/mailintake/internal/fakes/idp"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:7470", "address (loopback)")
	tenant := flag.String("tenant", "11111111-2222-3333-4444-555555555555", "tenant id")
	domain := flag.String("domain", "contoso.onmicrosoft.com", "tenant domain")
	publicApp := flag.String("public-app", "aaaaaaaa-0000-0000-0000-000000000001", "client id of a public app (ropc, device_code)")
	confApp := flag.String("confidential-app", "aaaaaaaa-0000-0000-0000-000000000002", "client id of a confidential app (client_credentials)")
	secret := flag.String("secret", "dev-secret", "client secret of the confidential app")
	var users, gusers list
	flag.Var(&users, "user", "user as upn:password (repeatable)")
	flag.Var(&gusers, "google-user", "Google Workspace account (repeatable; default help@example.com)")
	gclient := flag.String("google-client-id", "1234-dev.apps.googleusercontent.com", "Google OAuth client (Desktop app) id")
	gsecret := flag.String("google-client-secret", "GOCSPX-dev-secret", "its secret")
	gkey := flag.String("google-key-file", filepath.Join(os.TempDir(), "mailintake-dev-google-key.json"), "where to write the service account's JSON key")
	flag.Parse()
	if len(users) == 0 {
		users = list{"help@" + *domain + ":M365-password"}
	}
	p := idp.New(*tenant, *domain)
	var upns []string
	for _, u := range users {
		upn, pw, _ := strings.Cut(u, ":")
		p.AddUser(idp.User{UPN: upn, Password: pw})
		upns = append(upns, upn)
	}
	p.AddApp(idp.App{ClientID: *publicApp, PublicFlows: true})
	p.AddApp(idp.App{ClientID: *confApp, Secret: *secret, AppOnlyUsers: upns})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "mailintake-dev-idp: listen on a loopback address only")
		os.Exit(2)
	}
	if len(gusers) == 0 {
		gusers = list{"help@example.com"}
	}
	g := idp.NewGoogle()
	for _, u := range gusers {
		g.AddUser(idp.GoogleUser{Email: u})
	}
	g.AddClient(idp.GoogleClient{ID: *gclient, Secret: *gsecret})
	sa := g.AddServiceAccount("mailintake@dev-project.iam.gserviceaccount.com")
	g.Delegate(sa.ClientID, idp.ScopeGmail)
	mux := http.NewServeMux()
	mux.Handle("/", p)
	mux.Handle("/google/", http.StripPrefix("/google", g))
	mux.HandleFunc("GET /approve", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Approve(r.URL.Query().Get("code"), r.URL.Query().Get("user")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprintln(w, "approved: the mailbox connects within a few seconds")
	})
	base := "http://" + ln.Addr().String()
	fmt.Printf("fake Microsoft identity platform at %s (tests and trials only)\n", base)
	fmt.Printf("  --config authority=%s --config tenant_id=%s\n", base, *tenant)
	fmt.Printf("  ropc / device_code: --config client_id=%s\n", *publicApp)
	fmt.Printf("  client_credentials: --config client_id=%s --config flow=client_credentials (secret %q)\n", *confApp, *secret)
	fmt.Printf("  users: %s\n", strings.Join(users, " "))
	fmt.Printf("  approve a device code: %s/approve?code=USER_CODE&user=UPN\n", base)
	fmt.Printf("  introspection (for Dovecot's oauth2 passdb): %s/introspect\n", base)
	gbase := base + "/google"
	if err := os.WriteFile(*gkey, sa.KeyJSON(gbase+"/token"), 0o600); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("fake Google OAuth at %s (tests and trials only): --provider google --config endpoint=%s\n", gbase, gbase)
	fmt.Printf("  service_account: --secret-field service_account_key --secret-stdin < %s\n", *gkey)
	fmt.Printf("  authorization_code: --config flow=authorization_code --config client_id=%s (client_secret %q); sign-ins are approved at once\n", *gclient, *gsecret)
	fmt.Printf("  accounts: %s\n", strings.Join(gusers, " "))
	fmt.Printf("  introspection (for Dovecot's oauth2 passdb): %s/introspect\n", gbase)
	log.Fatal(http.Serve(ln, mux))
}
