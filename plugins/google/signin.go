package google

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// The interactive sign-in (flow authorization_code) is Google's installed-app flow: PKCE and a
// loopback redirect (RFC 8252 7.3). BeginAuthorization listens on 127.0.0.1 (a free port, or
// redirect_port), and returns Google's sign-in URL; Google sends the browser back to that port
// with the code, and the next PollAuthorization redeems it with the PKCE verifier. When the
// browser is on another machine, its last page fails to load: the admin pastes its address into
// the mailbox's secret authorization_response, and the credential request that follows the
// change (or a poll that sees it) redeems it. The verifier and the OAuth state travel in the
// sign-in's handle, which the server keeps encrypted.

// signInWindow is how long a sign-in may take, from its start to the redeemed code.
const signInWindow = 15 * time.Minute

// pollInterval is how often the server asks whether the browser came back: a poll only looks
// into this process's memory.
const pollInterval = 2 * time.Second

// handle is the sign-in's opaque handle (JSON), kept by the server between the calls.
type handle struct {
	State       string    `json:"state"`
	Verifier    string    `json:"verifier"`
	RedirectURI string    `json:"redirect_uri"`
	MailboxID   string    `json:"mailbox_id,omitempty"`
	Started     time.Time `json:"started"`
}

// signIn is a sign-in in progress in this process.
type signIn struct {
	handle
	expiry time.Time
	lb     *loopback

	username, clientID string // for the words of an error

	mu          sync.Mutex
	code        string       // from the browser
	redirectErr *googleError // the browser came back with an error
	done        bool         // redeemed (tr, st) or failed for good (err)
	tr          tokenResponse
	st          state
	err         error
}

// loopback is a listener on 127.0.0.1 that receives the browsers of the sign-ins.
type loopback struct {
	key  int // the port asked for (0: any)
	port int
	srv  *http.Server
	live int // sign-ins that may still come back
}

// signIns are this process's sign-ins and listeners.
type signIns struct {
	mu      sync.Mutex
	byState map[string]*signIn
	servers map[int]*loopback
}

func newSignIns() *signIns {
	return &signIns{byState: map[string]*signIn{}, servers: map[int]*loopback{}}
}

func (p *Provider) ins() *signIns {
	if p.signIns == nil {
		panic("google: use google.New() to make the provider")
	}
	return p.signIns
}

// listen returns the listener for a port (0: the shared one on a free port), started if needed,
// counting one more sign-in on it.
func (si *signIns) listen(port int) (*loopback, error) {
	si.mu.Lock()
	defer si.mu.Unlock()
	if lb, ok := si.servers[port]; ok {
		lb.live++
		return lb, nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	lb := &loopback{key: port, port: ln.Addr().(*net.TCPAddr).Port, live: 1}
	lb.srv = &http.Server{Handler: http.HandlerFunc(si.serveRedirect), ReadHeaderTimeout: 10 * time.Second}
	si.servers[port] = lb
	go lb.srv.Serve(ln)
	return lb, nil
}

// release counts one sign-in less on its listener and stops the listener when none is left
// (caller holds si.mu).
func (si *signIns) releaseLocked(lb *loopback) {
	if lb == nil {
		return
	}
	lb.live--
	if lb.live <= 0 && si.servers[lb.key] == lb {
		delete(si.servers, lb.key)
		go lb.srv.Close()
	}
}

// add registers a sign-in until it expires, replacing the mailbox's earlier ones.
func (si *signIns) add(in *signIn) {
	si.mu.Lock()
	defer si.mu.Unlock()
	for k, old := range si.byState {
		if in.MailboxID != "" && old.MailboxID == in.MailboxID {
			delete(si.byState, k)
			si.releaseLocked(old.lb)
			old.lb = nil
		}
	}
	si.byState[in.State] = in
	time.AfterFunc(time.Until(in.expiry), func() {
		si.mu.Lock()
		defer si.mu.Unlock()
		if si.byState[in.State] == in {
			delete(si.byState, in.State)
			si.releaseLocked(in.lb)
			in.lb = nil
		}
	})
}

func (si *signIns) get(state string) *signIn {
	si.mu.Lock()
	defer si.mu.Unlock()
	return si.byState[state]
}

// finished releases a sign-in's listener once its code was redeemed; the sign-in itself stays
// until it expires, so every caller that asks gets the one result.
func (si *signIns) finished(in *signIn) {
	si.mu.Lock()
	defer si.mu.Unlock()
	si.releaseLocked(in.lb)
	in.lb = nil
}

const pageStyle = `<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}code{word-break:break-all}</style>`

// serveRedirect receives the browser at the end of a sign-in. It keeps the code for the next
// poll (which redeems it) and tells the user so.
func (si *signIns) serveRedirect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method != http.MethodGet || r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	in := si.get(q.Get("state"))
	if in == nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><title>mailintake</title>"+pageStyle+"<h1>This sign-in is over</h1>"+
			"<p>mailintake knows no sign-in in progress for this page (it expired, or was started again). Run <code>mailintake mailbox authorize</code> again.</p>")
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case q.Get("error") != "":
		in.redirectErr = &googleError{Error: q.Get("error"), ErrorDescription: q.Get("error_description")}
		e := explain(*in.redirectErr, errCtx{s: &settings{username: in.username, clientID: in.clientID}, grant: grantRedirect})
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<!doctype html><title>mailintake: not signed in</title>"+pageStyle+"<h1>Not signed in</h1><p>%s.</p><p>%s</p>",
			html.EscapeString(e.Message), html.EscapeString(strings.ReplaceAll(e.Action, "MAILBOX_ID", orPlaceholder(in.MailboxID))))
	case q.Get("code") != "":
		if !in.done {
			in.code = q.Get("code")
		}
		fmt.Fprint(w, "<!doctype html><title>mailintake: signed in</title>"+pageStyle+"<h1>Signed in with Google</h1>"+
			"<p>mailintake received the sign-in and finishes it now: <code>mailintake mailbox authorize</code> (or the web page) shows the outcome within seconds. You can close this window.</p>")
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<!doctype html><title>mailintake</title>"+pageStyle+"<h1>No sign-in here</h1><p>The address carries neither a code nor an error.</p>")
	}
}

// complete redeems a sign-in's code once; later and concurrent callers get the same result.
func (p *Provider) complete(ctx context.Context, s *settings, in *signIn, code string) (tokenResponse, state, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return in.tr, in.st, in.err
	}
	tr, st, err := p.exchange(ctx, s, code, in.Verifier, in.RedirectURI, in.State)
	if err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, authplugin.ErrTemporary)) {
		return tr, st, err // not settled: a later call tries again
	}
	in.done, in.tr, in.st, in.err, in.code = true, tr, st, err, ""
	p.ins().finished(in)
	return tr, st, err
}

// authResponse is the address of a sign-in's last page, pasted by the admin.
type authResponse struct {
	State, Code, Error, ErrorDescription string
}

// parseAuthResponse reads a pasted address: the whole URL, or its query.
func parseAuthResponse(s string) (authResponse, error) {
	s = strings.TrimSpace(s)
	q := s
	if i := strings.IndexByte(s, '?'); i >= 0 {
		q = s[i+1:]
	}
	q, _, _ = strings.Cut(q, "#")
	v, err := url.ParseQuery(q)
	if err != nil {
		return authResponse{}, fmt.Errorf("must be the address of the page the browser reached after the sign-in (http://127.0.0.1:PORT/?state=…&code=…): %v", err)
	}
	r := authResponse{State: v.Get("state"), Code: v.Get("code"), Error: v.Get("error"), ErrorDescription: v.Get("error_description")}
	switch {
	case r.State == "":
		return r, fmt.Errorf("has no state=…: paste the whole address of the page the browser reached after the sign-in (http://127.0.0.1:PORT/?state=…&code=…), not the code alone")
	case r.Code == "" && r.Error == "":
		return r, fmt.Errorf("has no code=…: paste the whole address of the page the browser reached after the sign-in (http://127.0.0.1:PORT/?state=…&code=…)")
	}
	return r, nil
}

// completePasted completes a sign-in from a pasted address (the secret authorization_response)
// when a credential is asked for. ok is false when the address is not for this: used already,
// or unknown while the mailbox has a sign-in.
func (p *Provider) completePasted(ctx context.Context, s *settings, st state, mailboxID string) (authplugin.IssueResult, bool, error) {
	ar, err := parseAuthResponse(s.authResponse)
	if err != nil || ar.State == st.SignIn {
		return authplugin.IssueResult{}, false, nil
	}
	in := p.ins().get(ar.State)
	if in == nil || (in.MailboxID != "" && mailboxID != "" && in.MailboxID != mailboxID) {
		if st.RefreshToken != "" {
			return authplugin.IssueResult{}, false, nil // an old address: the stored sign-in goes on
		}
		return authplugin.IssueResult{}, true, &authplugin.Error{Reason: authplugin.ReasonAuthorizationRequired, Code: "unknown_sign_in",
			Message: "the pasted sign-in address (authorization_response) belongs to no sign-in in progress here: it expired, was started again, or was started before the server restarted",
			Action:  "Run 'mailintake mailbox authorize " + orPlaceholder(mailboxID) + "' again and paste the address its sign-in ends on within 10 minutes."}
	}
	if ar.Error != "" {
		return authplugin.IssueResult{}, true, withMailbox(explain(googleError{Error: ar.Error, ErrorDescription: ar.ErrorDescription}, errCtx{s: s, grant: grantRedirect}), mailboxID)
	}
	tr, nst, err := p.complete(ctx, s, in, ar.Code)
	if err != nil {
		return authplugin.IssueResult{}, true, withMailbox(err, mailboxID)
	}
	return authplugin.IssueResult{Credential: p.credential(s, tr), State: nst.bytes(), StateChanged: true, Health: p.health(s, nst)}, true, nil
}

func orPlaceholder(id string) string {
	if id == "" {
		return "MAILBOX_ID"
	}
	return id
}

// withMailbox puts the mailbox's id into an error's action.
func withMailbox(err error, mailboxID string) error {
	e, ok := authplugin.AsError(err)
	if !ok || mailboxID == "" || !strings.Contains(e.Action, "MAILBOX_ID") {
		return err
	}
	c := *e
	c.Action = strings.ReplaceAll(c.Action, "MAILBOX_ID", mailboxID)
	return &c
}

// BeginAuthorization implements authplugin.Authorizer: it starts the loopback listener and
// returns Google's sign-in URL.
func (p *Provider) BeginAuthorization(_ context.Context, req authplugin.Request) (authplugin.Authorization, error) {
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.Authorization{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error(), Action: "Correct the mailbox's google settings."}
	}
	if s.flow != FlowAuthorizationCode {
		return authplugin.Authorization{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid,
			Message: "interactive sign-in is for flow authorization_code; this mailbox uses " + s.flow + ", which needs none",
			Action:  "Set the config field flow=authorization_code first, or use the service account as it is."}
	}
	lb, err := p.ins().listen(s.redirectPort)
	if err != nil {
		e := &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "cannot listen on 127.0.0.1 for the sign-in's redirect: " + err.Error(),
			Action: "Try again."}
		if s.redirectPort != 0 {
			e.Reason, e.Action = authplugin.ReasonConfigInvalid, fmt.Sprintf("Free port %d on the server, or set redirect_port to another port (or none).", s.redirectPort)
		}
		return authplugin.Authorization{}, e
	}
	now := p.now()
	in := &signIn{handle: handle{State: oauth2.GenerateVerifier(), Verifier: oauth2.GenerateVerifier(),
		RedirectURI: fmt.Sprintf("http://127.0.0.1:%d/", lb.port), MailboxID: req.Account.MailboxID, Started: now.UTC()},
		expiry: now.Add(signInWindow), lb: lb, username: s.username, clientID: s.clientID}
	p.ins().add(in)
	cfg := &oauth2.Config{ClientID: s.clientID, Endpoint: oauth2.Endpoint{AuthURL: s.authURL, TokenURL: s.tokenURL},
		RedirectURL: in.RedirectURI, Scopes: []string{ScopeMail, "openid", "email"}}
	authURL := cfg.AuthCodeURL(in.State, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(in.Verifier),
		// consent: Google returns a refresh token only when its consent screen was shown.
		oauth2.SetAuthURLParam("prompt", "consent"), oauth2.SetAuthURLParam("login_hint", s.username))
	h, _ := json.Marshal(in.handle)
	id := orPlaceholder(req.Account.MailboxID)
	msg := fmt.Sprintf("Open the URL in a browser, sign in as %s and allow access to Gmail. Google then sends the browser to %s on the server, which completes the sign-in. "+
		"If the browser is not on the server's machine, that last page fails to load: copy its whole address from the address bar within 10 minutes and save it for the mailbox "+
		"(printf '%%s' 'ADDRESS' | mailintake mailbox update %s --secret-field authorization_response --secret-stdin), "+
		"or first forward the port from the browser's machine (ssh -L %d:127.0.0.1:%d SERVER).",
		s.username, in.RedirectURI, id, lb.port, lb.port)
	return authplugin.Authorization{VerificationURI: authURL, Message: msg, Expiry: in.expiry, Interval: pollInterval, Handle: h}, nil
}

// PollAuthorization implements authplugin.Authorizer: has the browser come back (to this
// process's listener), or has the admin pasted the address?
func (p *Provider) PollAuthorization(ctx context.Context, req authplugin.Request, raw []byte) (authplugin.PollResult, error) {
	var h handle
	if err := json.Unmarshal(raw, &h); err != nil || h.State == "" {
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationExpired, Message: "the sign-in's handle is not this provider's",
			Action: "Run 'mailintake mailbox authorize " + orPlaceholder(req.Account.MailboxID) + "' again."}
	}
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error()}
	}
	st := loadState(req.State)
	if st.SignIn == h.State && st.RefreshToken != "" {
		// A credential request redeemed the pasted address already and stored the sign-in.
		return authplugin.PollResult{Done: true, State: req.State}, nil
	}
	done := func(_ tokenResponse, nst state, err error) (authplugin.PollResult, error) {
		if err != nil {
			return authplugin.PollResult{}, withMailbox(err, req.Account.MailboxID)
		}
		return authplugin.PollResult{Done: true, State: nst.bytes()}, nil
	}
	in := p.ins().get(h.State)
	if in != nil {
		in.mu.Lock()
		code, rerr, finished := in.code, in.redirectErr, in.done
		in.mu.Unlock()
		switch {
		case rerr != nil:
			return authplugin.PollResult{}, withMailbox(explain(*rerr, errCtx{s: s, grant: grantRedirect}), req.Account.MailboxID)
		case code != "" || finished:
			return done(p.complete(ctx, s, in, code))
		}
	}
	// The address pasted into the mailbox (seen when the server read the mailbox after the
	// paste): redeemed with the handle's verifier, so this works in any process.
	if s.authResponse != "" {
		if ar, err := parseAuthResponse(s.authResponse); err == nil && ar.State == h.State {
			if ar.Error != "" {
				return authplugin.PollResult{}, withMailbox(explain(googleError{Error: ar.Error, ErrorDescription: ar.ErrorDescription}, errCtx{s: s, grant: grantRedirect}), req.Account.MailboxID)
			}
			if in != nil {
				return done(p.complete(ctx, s, in, ar.Code))
			}
			return done(p.exchange(ctx, s, ar.Code, h.Verifier, h.RedirectURI, h.State))
		}
	}
	return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationPending, Message: "waiting for the browser to come back from Google's sign-in"}
}
