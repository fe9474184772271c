package google

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/testutil"
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/authplugin/authplugintest"
)

// memState is the server's store of provider state, in memory.
type memState struct {
	mu     sync.Mutex
	m      map[string][]byte
	writes int
}

func (s *memState) ProviderState(_ context.Context, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id], nil
}

func (s *memState) SwapProviderState(_ context.Context, id string, old, st []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !bytes.Equal(s.m[id], old) {
		return store.ErrConflict
	}
	s.m[id] = st
	s.writes++
	return nil
}

func (s *memState) get(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

func (s *memState) set(id string, st []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = st
}

func newHost(t *testing.T) (*pluginhost.Host, *memState) {
	t.Helper()
	st := &memState{m: map[string][]byte{}}
	h := pluginhost.New(pluginhost.Options{Dir: testutil.PluginDir(t), State: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(h.Close)
	return h, st
}

// TestThroughPluginHost runs the provider as the server does: its own process, over gRPC.
func TestThroughPluginHost(t *testing.T) {
	w := newWorld(t)
	h, st := newHost(t)
	ctx := context.Background()

	info, err := h.Describe(ctx, "google")
	if err != nil || !info.Interactive || info.DisplayName == "" || len(info.Fields) != 8 {
		t.Fatalf("Describe: %+v %v", info, err)
	}
	bad := w.saAccount()
	bad.Secrets["service_account_key"] = `{"installed":{}}`
	var verr *authplugin.ValidationError
	if err := h.Validate(ctx, "google", bad); !errors.As(err, &verr) || verr.Violations[0].Field != "service_account_key" {
		t.Errorf("Validate: %v", err)
	}

	// Service account: concurrent requests for one mailbox make one token request (single
	// flight), and the cached token serves them all.
	var wg sync.WaitGroup
	creds := make([]authplugin.Credential, 8)
	for i := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := h.Credential(ctx, "google", w.saAccount(), false)
			if err != nil {
				t.Errorf("Credential: %v", err)
			}
			creds[i] = c
		}()
	}
	wg.Wait()
	if n := w.g.Count("jwt-bearer"); n != 1 {
		t.Errorf("%d token requests for 8 concurrent credentials, want 1", n)
	}
	if !w.g.Valid(creds[0].Secret, user) || creds[0].Mechanism != "XOAUTH2" || creds[7].Secret != creds[0].Secret {
		t.Errorf("credentials %+v", creds[0])
	}
	// Typed errors cross the process boundary intact.
	w.g.Delegate(w.sa.ClientID)
	undelegated := w.saAccount()
	undelegated.MailboxID = "mb-2"
	_, err = h.Credential(ctx, "google", undelegated, false)
	if e, ok := authplugin.AsError(err); !errors.Is(err, authplugin.ErrConsentRequired) || !ok || !strings.Contains(e.Action, "Manage Domain Wide Delegation") {
		t.Errorf("undelegated: %v", err)
	}

	// Authorization code: begin through the host, the browser comes back to the listener of the
	// plugin process, the poll completes, and the state is the server's.
	a := w.userAccount(nil)
	a.MailboxID = "mb-user"
	if _, err := h.Credential(ctx, "google", a, false); !errors.Is(err, authplugin.ErrAuthorizationRequired) {
		t.Fatalf("before the sign-in: %v", err)
	}
	auth, err := h.BeginAuthorization(ctx, "google", a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.PollAuthorization(ctx, "google", a, auth.Handle); !errors.Is(err, authplugin.ErrAuthorizationPending) {
		t.Fatalf("poll before the sign-in: %v", err)
	}
	if code, page := browser(t, auth.VerificationURI); code != 200 {
		t.Fatalf("browser: %d %s", code, page)
	}
	res, err := h.PollAuthorization(ctx, "google", a, auth.Handle)
	if err != nil || !res.Done {
		t.Fatalf("poll: %+v %v", res, err)
	}
	st.set(a.MailboxID, res.State) // as the server stores it
	c, err := h.Credential(ctx, "google", a, false)
	if err != nil || !w.g.Valid(c.Secret, user) {
		t.Fatalf("credential after the sign-in: %v", err)
	}
	if hl, ok := h.Health(a.MailboxID); !ok || hl.Token == nil || hl.Token.RefreshTokenIssued.IsZero() {
		t.Errorf("health: %+v", hl)
	}

	// Rotation: the rotated refresh token is stored before the credential is returned; the next
	// refresh uses it (the old one is revoked).
	w.g.SetRotation(true)
	before := loadState(st.get(a.MailboxID)).RefreshToken
	if _, err := h.Credential(ctx, "google", a, true); err != nil {
		t.Fatal(err)
	}
	after := loadState(st.get(a.MailboxID)).RefreshToken
	if after == before || after == "" {
		t.Fatalf("the rotated refresh token was not stored")
	}
	if _, err := h.Credential(ctx, "google", a, true); err != nil || w.g.Count("refresh_reused") != 0 {
		t.Errorf("refresh after rotation: %v (reused %d)", err, w.g.Count("refresh_reused"))
	}

	// The pasted address, through the host: the credential request redeems it and the state is
	// stored; the poll then sees it.
	b := w.userAccount(nil)
	b.MailboxID = "mb-paste"
	auth, err = h.BeginAuthorization(ctx, "google", b)
	if err != nil {
		t.Fatal(err)
	}
	b.Secrets["authorization_response"] = remoteBrowser(t, auth.VerificationURI)
	if _, err := h.Credential(ctx, "google", b, false); err != nil {
		t.Fatalf("credential from the pasted address: %v", err)
	}
	if loadState(st.get(b.MailboxID)).RefreshToken == "" {
		t.Fatalf("the pasted sign-in was not stored")
	}
	old := w.userAccount(nil) // the mailbox as the server's poller read it, before the paste
	old.MailboxID = b.MailboxID
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := h.PollAuthorization(ctx, "google", old, auth.Handle)
		if err == nil && res.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("poll after the paste: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConformance checks the built provider as mailintake provider check does.
func TestConformance(t *testing.T) {
	authplugintest.Check(t, filepath.Join(testutil.PluginDir(t), "mailintake-auth-google"))
}

// TestServiceAccountBehindPrefix: the fake served under /google, as make dev-idp does (the JWT's
// audience is the token endpoint's full URL).
func TestServiceAccountBehindPrefix(t *testing.T) {
	g := idp.NewGoogle()
	g.AddUser(idp.GoogleUser{Email: user})
	sa := g.AddServiceAccount(saEmail)
	g.Delegate(sa.ClientID, idp.ScopeGmail)
	mux := http.NewServeMux()
	mux.Handle("/google/", http.StripPrefix("/google", g))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	a := authplugin.Account{MailboxID: mailboxID, Username: user, Config: map[string]string{"endpoint": hs.URL + "/google/"},
		Secrets: map[string]string{"service_account_key": string(sa.KeyJSON(hs.URL + "/google/token"))}}
	res, err := New().IssueCredential(context.Background(), authplugin.Request{Account: a})
	if err != nil || !g.Valid(res.Credential.Secret, user) {
		t.Fatalf("behind a prefix: %v", err)
	}
}
