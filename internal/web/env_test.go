package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/metrics"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/secrets"
	mbsession "github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store/sqlite"
	"github.com/mailintake/mailintake/internal/testutil"
	"github.com/mailintake/mailintake/internal/web/apiconn"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
	"github.com/mailintake/mailintake/server"
)

// env is the page in front of a real API in this process (SQLite store, the real provider
// plugins, mailbox sessions), served by httptest on a loopback port.
type env struct {
	t     *testing.T
	h     *Handler
	ts    *httptest.Server
	base  string
	admin string
	mb    mailintakev1.MailboxServiceClient
	msgs  mailintakev1.MessageServiceClient
	toks  mailintakev1.TokenServiceClient

	mu    sync.Mutex
	pages []seen // every HTML response any user of the env got
}

type seen struct {
	url  string
	body string
}

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	box, err := secrets.NewBox(bytes.Repeat([]byte{7}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, dir, box)
	if err != nil {
		t.Fatal(err)
	}
	host := pluginhost.New(pluginhost.Options{Dir: testutil.PluginDir(t), State: st, Logger: log})
	broker := delivery.New(st)
	sup := mbsession.NewSupervisor(st, host, broker, metrics.New(), log, mbsession.Options{
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AuthBackoff: time.Hour, CommandTimeout: 10 * time.Second})
	sctx, stopSessions := context.WithCancel(ctx)
	if err := sup.Start(sctx); err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Store: st, Plugins: host, Sessions: sup, Broker: broker, Logger: log})
	tokenPath := filepath.Join(dir, server.AdminTokenFile)
	if _, err := server.EnsureAdminToken(ctx, st, tokenPath, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(tokenPath)
	api, err := apiconn.Open(srv.ServerOptions(), srv.Register)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, admin: strings.TrimSpace(string(tok)),
		mb: mailintakev1.NewMailboxServiceClient(api), msgs: mailintakev1.NewMessageServiceClient(api), toks: mailintakev1.NewTokenServiceClient(api)}
	e.ts = httptest.NewUnstartedServer(nil)
	o := Options{API: api, Listen: e.ts.Listener.Addr().String(), Logger: log, SignInDelay: 20 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	e.h, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Config.Handler = e.h
	e.ts.Start()
	e.base = e.ts.URL
	t.Cleanup(func() {
		e.ts.Close()
		api.Close()
		srv.Shutdown()
		stopSessions()
		sup.Wait()
		broker.Close()
		host.Close()
		st.Close()
	})
	return e
}

// as is a context calling the API with token.
func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (e *env) tenantToken(tenant string) string {
	e.t.Helper()
	resp, err := e.toks.CreateToken(as(e.admin), &mailintakev1.CreateTokenRequest{Tenant: tenant, Name: "desk"})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetSecret()
}

func (e *env) createMailbox(token string, mb *mailintakev1.Mailbox) *mailintakev1.Mailbox {
	e.t.Helper()
	resp, err := e.mb.CreateMailbox(as(token), &mailintakev1.CreateMailboxRequest{Mailbox: mb})
	if err != nil {
		e.t.Fatalf("CreateMailbox: %v", err)
	}
	return resp.GetMailbox()
}

// user is a browser: its own cookies, and the headers a browser sends on a same-origin form
// post.
type user struct {
	e      *env
	client *http.Client
}

func (e *env) user() *user {
	jar, _ := cookiejar.New(nil)
	return &user{e: e, client: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

// signedIn is a user signed in with token.
func (e *env) signedIn(token string) *user {
	e.t.Helper()
	u := e.user()
	resp, body := u.post("/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-signed-in=`) {
		e.t.Fatalf("signing in: %d\n%s", resp.StatusCode, body)
	}
	return u
}

// do sends a request and records an HTML answer.
func (u *user) do(req *http.Request) (*http.Response, string) {
	u.e.t.Helper()
	resp, err := u.client.Do(req)
	if err != nil {
		u.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		u.e.mu.Lock()
		u.e.pages = append(u.e.pages, seen{req.URL.String(), string(b)})
		u.e.mu.Unlock()
	}
	return resp, string(b)
}

func (u *user) get(path string, header ...string) (*http.Response, string) {
	u.e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u.e.base+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return u.do(req)
}

// htmx gets a part of a page as htmx does.
func (u *user) htmx(path string) (*http.Response, string) {
	u.e.t.Helper()
	return u.get(path, "HX-Request", "true")
}

// post submits a form from the page itself (same origin).
func (u *user) post(path string, form url.Values, header ...string) (*http.Response, string) {
	u.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u.e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.e.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return u.do(req)
}

// noRedirect returns the user's client that stops at redirects.
func (u *user) noRedirect() *http.Client {
	c := *u.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// attr returns the first value of an attribute in HTML matched by a CSS-like pattern
// (a regular expression over the tag, e.g. `data-delivered="(\d+)"`).
func find(body, pattern string) string {
	m := regexp.MustCompile(pattern).FindStringSubmatch(body)
	if len(m) < 2 {
		return ""
	}
	return m[1]
}
