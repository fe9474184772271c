package o365

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// scopeRecorder is a token endpoint that records the scope of each request by its path's last
// element ("devicecode", "token") and answers with a token or a device code.
type scopeRecorder struct {
	mu     sync.Mutex
	scopes map[string][]string
}

func (r *scopeRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	req.ParseForm()
	kind := req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
	r.mu.Lock()
	r.scopes[kind] = append(r.scopes[kind], req.PostForm.Get("scope"))
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if kind == "devicecode" {
		json.NewEncoder(w).Encode(map[string]any{"device_code": "dc", "user_code": "UC", "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 1})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "refresh_token": "rt", "token_type": "Bearer", "expires_in": 3600})
}

func (r *scopeRecorder) last(kind string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.scopes[kind]
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

// The interactive sign-in asks for reading and sending at once (one consent, one refresh token
// for both); each token is then asked for with its own protocol's scope, so a mailbox that only
// reads never needs SMTP.Send. Configured scopes are used as they are.
func TestOneConsentCoversReadingAndSending(t *testing.T) {
	rec := &scopeRecorder{scopes: map[string][]string{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	p := Provider{HTTPClient: srv.Client()}
	ctx := context.Background()
	device := func(protocol string, cfg map[string]string) authplugin.Account {
		a := acct(map[string]string{"flow": "device_code", "authority": srv.URL}, nil)
		for k, v := range cfg {
			a.Config[k] = v
		}
		a.Protocol = protocol
		return a
	}
	for protocol, read := range map[string]string{"imap": ScopeIMAP, "pop3": ScopePOP, "smtp": ScopeIMAP} {
		if _, err := p.BeginAuthorization(ctx, authplugin.Request{Account: device(protocol, nil)}); err != nil {
			t.Fatal(err)
		}
		want := read + " " + ScopeSMTP + " offline_access openid profile"
		if got := rec.last("devicecode"); got != want {
			t.Errorf("%s sign-in asked for %q, want %q", protocol, got, want)
		}
	}
	if _, err := p.BeginAuthorization(ctx, authplugin.Request{Account: device("imap", map[string]string{"scopes": ScopeIMAP + " offline_access"})}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last("devicecode"); got != ScopeIMAP+" offline_access" {
		t.Errorf("sign-in with configured scopes asked for %q", got)
	}

	state := state{RefreshToken: "rt-0"}.bytes()
	for protocol, want := range map[string]string{"imap": ScopeIMAP, "smtp": ScopeSMTP, "pop3": ScopePOP} {
		res, err := p.IssueCredential(ctx, authplugin.Request{Account: device(protocol, nil), State: state})
		if err != nil {
			t.Fatal(err)
		}
		if res.Credential.Mechanism != "XOAUTH2" || res.Credential.Identity != "help@contoso.onmicrosoft.com" {
			t.Errorf("%s credential %+v", protocol, res.Credential)
		}
		if got := rec.last("token"); got != want+" offline_access openid profile" {
			t.Errorf("%s token asked for %q, want %s alone", protocol, got, want)
		}
	}
}
