// Package web is the admin web page that mailintaked serves on its own listener (--http-listen):
// sign-in with an API token, the mailbox list, the add and edit form rendered from the auth
// provider's field descriptions with Save and Test, each mailbox's status, event log and
// quarantine, device-code sign-in, and (for the admin token) API tokens.
//
// The page holds no data of its own. Every page calls the gRPC API, in the same process through
// an in-memory connection (package apiconn), with the token the user signed in with: the page
// sees exactly what that token sees, and the API's checks (tenant scoping, validation) are the
// page's. Pages are server-rendered html/template; the forms work without JavaScript, and the
// vendored htmx (served from the binary, like the stylesheet) only makes them live: the provider
// fields swap when the sign-in method changes, and the connection test, the status and the
// device-code sign-in refresh by themselves.
//
// Subpackages: guard (Host allowlist, cross-origin refusal, security headers), websession
// (server-side sessions and their cookie), mailboxform (the form ↔ the API's Mailbox and its
// field violations), apiconn (the in-process API connection), static (the embedded files).
package web

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/web/apiconn"
	"github.com/mailintake/mailintake/internal/web/guard"
	"github.com/mailintake/mailintake/internal/web/static"
	"github.com/mailintake/mailintake/internal/web/websession"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

// Options configure New.
type Options struct {
	// API is the connection to the API (apiconn.Open); calls carry the signed-in user's token.
	API grpc.ClientConnInterface
	// Listen is the address the page's listener is bound to (host:port), for the Host allowlist.
	Listen string
	// Hosts are more host names the page answers to (--http-hosts).
	Hosts []string
	// TLS is set when the page is served over HTTPS: the session cookie is then Secure.
	TLS bool
	// Logger logs sign-ins and failures; nil discards.
	Logger *slog.Logger
	// Context bounds background work (connection tests); nil means context.Background.
	Context context.Context
	// SignInDelay slows every refused sign-in, against guessing (default 1 s).
	SignInDelay time.Duration
	// CallTimeout bounds each API call of a page (default 30 s); a connection test has 2 min.
	CallTimeout time.Duration
}

// Handler serves the page.
type Handler struct {
	opts      Options
	log       *slog.Logger
	sessions  *websession.Store[*state]
	pages     map[string]*template.Template
	mux       *http.ServeMux
	root      http.Handler
	mailboxes mailintakev1.MailboxServiceClient
	messages  mailintakev1.MessageServiceClient
	providers mailintakev1.AuthProviderServiceClient
	tokens    mailintakev1.TokenServiceClient
}

type session = websession.Session[*state]

// state is a session's own data on the page.
type state struct {
	mu      sync.Mutex
	flashes []flash
	drafts  map[string]*draft
	runs    map[string]*testRun
	order   []string // run ids, oldest first
	// created is a token just created, shown once on the next tokens page.
	created *mailintakev1.CreateTokenResponse
}

// flash is a one-time message shown on the next page.
type flash struct {
	Text  string
	Error bool
}

// draft holds the secrets typed into a form that was sent back with errors, so they need not
// be typed again and are never written into the page.
type draft struct {
	provider string
	secrets  map[string]string
	at       time.Time
}

func newState() *state {
	return &state{drafts: map[string]*draft{}, runs: map[string]*testRun{}}
}

func (s *state) addFlash(text string, isErr bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flashes = append(s.flashes, flash{Text: text, Error: isErr})
}

func (s *state) takeFlashes() []flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flashes
	s.flashes = nil
	return f
}

// New returns the page's handler.
func New(opts Options) (*Handler, error) {
	if opts.API == nil {
		return nil, errors.New("web: no API connection")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.SignInDelay == 0 {
		opts.SignInDelay = time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	hosts, err := guard.NewHosts(opts.Listen, opts.Hosts, opts.TLS)
	if err != nil {
		return nil, err
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		opts: opts, log: opts.Logger, pages: pages, mux: http.NewServeMux(),
		sessions:  websession.New[*state](websession.Options{Secure: opts.TLS}),
		mailboxes: mailintakev1.NewMailboxServiceClient(opts.API),
		messages:  mailintakev1.NewMessageServiceClient(opts.API),
		providers: mailintakev1.NewAuthProviderServiceClient(opts.API),
		tokens:    mailintakev1.NewTokenServiceClient(opts.API),
	}
	h.routes()
	h.root = guard.Wrap(h.mux, guard.Options{Hosts: hosts, Refused: func(w http.ResponseWriter, r *http.Request, code int, reason string) {
		h.errorPage(w, r, nil, code, reason)
	}})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// maxForm bounds a form's body (a CA certificate is a few kilobytes).
const maxForm = 1 << 20

func (h *Handler) routes() {
	m := h.mux
	m.Handle("GET /static/", static.Handler())
	m.HandleFunc("GET /{$}", h.home)
	m.HandleFunc("POST /signin", h.signIn)
	m.HandleFunc("POST /signout", h.signOut)

	m.HandleFunc("GET /mailboxes/new", h.authed(h.newMailbox))
	m.HandleFunc("POST /mailboxes/new", h.authed(h.createMailbox))
	m.HandleFunc("GET /mailboxes/fields", h.authed(h.providerFields))
	m.HandleFunc("GET /mailboxes/{id}", h.authed(h.mailboxPage))
	m.HandleFunc("GET /mailboxes/{id}/live", h.authed(h.mailboxLive))
	m.HandleFunc("GET /mailboxes/{id}/edit", h.authed(h.editMailbox))
	m.HandleFunc("POST /mailboxes/{id}/edit", h.authed(h.updateMailbox))
	m.HandleFunc("POST /mailboxes/{id}/test", h.authed(h.testMailbox))
	m.HandleFunc("GET /mailboxes/{id}/tests/{run}", h.authed(h.testProgress))
	m.HandleFunc("POST /mailboxes/{id}/enable", h.authed(h.enableMailbox))
	m.HandleFunc("GET /mailboxes/{id}/disable", h.authed(h.confirmDisable))
	m.HandleFunc("POST /mailboxes/{id}/disable", h.authed(h.disableMailbox))
	m.HandleFunc("GET /mailboxes/{id}/delete", h.authed(h.confirmDelete))
	m.HandleFunc("POST /mailboxes/{id}/delete", h.authed(h.deleteMailbox))
	m.HandleFunc("GET /mailboxes/{id}/authorize", h.authed(h.authorizePage))
	m.HandleFunc("POST /mailboxes/{id}/authorize", h.authed(h.beginAuthorization))
	m.HandleFunc("GET /mailboxes/{id}/authorize/state", h.authed(h.authorizeState))
	m.HandleFunc("POST /mailboxes/{id}/quarantine/{qid}/replay", h.authed(h.replay))
	m.HandleFunc("GET /mailboxes/{id}/quarantine/{qid}/release", h.authed(h.confirmRelease))
	m.HandleFunc("POST /mailboxes/{id}/quarantine/{qid}/release", h.authed(h.release))

	m.HandleFunc("GET /tokens", h.authed(h.tokensPage))
	m.HandleFunc("POST /tokens", h.authed(h.createToken))
	m.HandleFunc("GET /tokens/{id}/revoke", h.authed(h.confirmRevoke))
	m.HandleFunc("POST /tokens/{id}/revoke", h.authed(h.revokeToken))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, r, h.sessions.Get(r), http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
}

// authed runs f for a signed-in request; others go to the sign-in form.
func (h *Handler) authed(f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.sessions.Get(r)
		if s == nil {
			h.redirect(w, r, "/")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				h.errorPage(w, r, s, http.StatusBadRequest, "The form could not be read: "+err.Error())
				return
			}
		}
		f(w, r, s)
	}
}

// isHTMX reports whether htmx made the request (to refresh part of a page).
func isHTMX(r *http.Request) bool { return r.Header.Get("HX-Request") == "true" }

// redirect sends the browser to url after a POST (303) or for a page it may not see; htmx
// requests are told to navigate.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, url string) {
	if isHTMX(r) {
		w.Header().Set("HX-Redirect", url)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Redirect(w, r, url, http.StatusSeeOther)
}

// call returns a context for an API call as the session's token.
func (h *Handler) call(r *http.Request, s *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.CallTimeout)
	return apiconn.WithToken(ctx, s.Token), cancel
}

// apiFailed shows an API error: a token that stopped working ends the session; a mailbox
// another tenant owns is "not found", as the API says.
func (h *Handler) apiFailed(w http.ResponseWriter, r *http.Request, s *session, err error) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated:
		h.sessions.End(w, s)
		h.log.Info("web session ended: the token no longer works", "token_id", s.TokenID, "reason", st.Message())
		if isHTMX(r) {
			h.redirect(w, r, "/")
			return
		}
		h.render(w, r, nil, http.StatusUnauthorized, "signin", &signInView{Error: "You were signed out: " + st.Message()})
	case codes.NotFound:
		h.errorPage(w, r, s, http.StatusNotFound, "Not found: "+st.Message())
	case codes.PermissionDenied:
		h.errorPage(w, r, s, http.StatusForbidden, "Not allowed with this token: "+st.Message())
	case codes.InvalidArgument:
		h.errorPage(w, r, s, http.StatusBadRequest, "The server refused the request: "+st.Message())
	case codes.FailedPrecondition:
		h.errorPage(w, r, s, http.StatusConflict, "That cannot be done now: "+st.Message())
	case codes.Unavailable, codes.DeadlineExceeded:
		h.errorPage(w, r, s, http.StatusServiceUnavailable, "The server could not answer: "+st.Message())
	default:
		h.errorPage(w, r, s, http.StatusBadGateway, "The server answered with an error: "+st.Message())
	}
}

// randomID returns a random id for drafts and test runs.
func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// page is what every full page renders with.
type page struct {
	Title   string
	Session *session
	Flashes []flash
	// Refresh reloads the page every so many seconds when JavaScript is off (htmx refreshes
	// the live parts otherwise).
	Refresh int
	Nav     string
	Data    any
}

// render writes a full page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, s *session, code int, name string, data any) {
	p := &page{Session: s, Data: data}
	if s != nil {
		p.Flashes = s.Data.takeFlashes()
	}
	if t, ok := data.(interface{ title() string }); ok {
		p.Title = t.title()
	}
	if rf, ok := data.(interface{ refresh() int }); ok {
		p.Refresh = rf.refresh()
	}
	p.Nav = name
	if n, ok := data.(interface{ nav() string }); ok {
		p.Nav = n.nav()
	}
	h.write(w, code, name, "layout", p)
}

// fragment writes a part of a page for htmx.
func (h *Handler) fragment(w http.ResponseWriter, name string, data any) {
	h.write(w, http.StatusOK, "fragments", name, data)
}

func (h *Handler) write(w http.ResponseWriter, code int, set, name string, data any) {
	t := h.pages[set]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		h.log.Error("web: rendering", "page", set, "template", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Vary", "HX-Request")
	w.WriteHeader(code)
	io.WriteString(w, b.String())
}

// errorView is the error page.
type errorView struct {
	Code    int
	Message string
}

func (e *errorView) title() string { return http.StatusText(e.Code) }

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	if isHTMX(r) && s != nil {
		// A refresh of part of a page failed (e.g. the mailbox was deleted meanwhile): show the
		// whole page's answer instead.
		s.Data.addFlash(msg, true)
		w.Header().Set("HX-Redirect", "/")
		w.WriteHeader(http.StatusOK)
		return
	}
	h.render(w, r, s, code, "error", &errorView{Code: code, Message: msg})
}

// parseTemplates parses each page with the layout and the shared fragments.
func parseTemplates() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	shared := []string{"templates/layout.html", "templates/fragments.html"}
	for _, name := range []string{"signin", "mailboxes", "form", "mailbox", "authorize", "tokens", "confirm", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, append(shared, "templates/"+name+".html")...)
		if err != nil {
			return nil, fmt.Errorf("web templates: %w", err)
		}
		pages[name] = t
	}
	t, err := template.New("fragments").Funcs(funcs).ParseFS(templateFS, shared...)
	if err != nil {
		return nil, fmt.Errorf("web templates: %w", err)
	}
	pages["fragments"] = t
	return pages, nil
}
