// Command mailintake-dev-idp serves the fake Microsoft identity platform on loopback for local
// trials of the o365 provider (never for production: it signs in anyone it knows).
//
//	mailintake-dev-idp --listen 127.0.0.1:7470 --user help@contoso.onmicrosoft.com:secret
//
// Device-code sign-ins are approved by opening http://ADDR/approve?code=USER_CODE&user=UPN.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
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
	var users list
	flag.Var(&users, "user", "user as upn:password (repeatable)")
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
	mux := http.NewServeMux()
	mux.Handle("/", p)
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
	log.Fatal(http.Serve(ln, mux))
}
