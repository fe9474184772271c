package o365

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

const clientID = "aaaaaaaa-0000-0000-0000-000000000001"

func acct(cfg, sec map[string]string) authplugin.Account {
	c := map[string]string{"client_id": clientID, "tenant_id": "contoso.onmicrosoft.com"}
	for k, v := range cfg {
		if v == "" {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return authplugin.Account{Username: "help@contoso.onmicrosoft.com", Protocol: "imap", Config: c, Secrets: sec}
}

func TestValidateConfig(t *testing.T) {
	pw := map[string]string{"password": "x"}
	if err := (Provider{}).ValidateConfig(context.Background(), acct(nil, pw)); err != nil {
		t.Fatalf("valid ropc refused: %v", err)
	}
	if err := (Provider{}).ValidateConfig(context.Background(), acct(map[string]string{"flow": "client_credentials"}, map[string]string{"client_secret": "s"})); err != nil {
		t.Fatalf("valid client_credentials refused: %v", err)
	}
	if err := (Provider{}).ValidateConfig(context.Background(), acct(map[string]string{"flow": "device_code", "tenant_id": "organizations"}, nil)); err != nil {
		t.Fatalf("valid device_code refused: %v", err)
	}
	for _, c := range []struct {
		name  string
		cfg   map[string]string
		sec   map[string]string
		field string
	}{
		{"client id not a GUID", map[string]string{"client_id": "my-app"}, pw, "client_id"},
		{"no client id", map[string]string{"client_id": ""}, pw, "client_id"},
		{"no tenant", map[string]string{"tenant_id": ""}, pw, "tenant_id"},
		{"common with ropc", map[string]string{"tenant_id": "common"}, pw, "tenant_id"},
		{"bad tenant", map[string]string{"tenant_id": "not a tenant"}, pw, "tenant_id"},
		{"no password", nil, nil, "password"},
		{"client_credentials without secret", map[string]string{"flow": "client_credentials"}, nil, "client_secret"},
		{"unknown flow", map[string]string{"flow": "magic"}, pw, "flow"},
		{"http authority", map[string]string{"authority": "http://login.example.com"}, pw, "authority"},
		{"bare scope", map[string]string{"scopes": "IMAP.AccessAsUser.All"}, pw, "scopes"},
		{"unknown field", map[string]string{"colour": "blue"}, pw, "colour"},
	} {
		err := (Provider{}).ValidateConfig(context.Background(), acct(c.cfg, c.sec))
		var verr *authplugin.ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: %v, want a validation error", c.name, err)
			continue
		}
		found := false
		for _, v := range verr.Violations {
			found = found || v.Field == c.field
		}
		if !found {
			t.Errorf("%s: violations %v do not name %s", c.name, verr.Violations, c.field)
		}
	}
	// http is fine on loopback (the fake identity platform in tests).
	if err := (Provider{}).ValidateConfig(context.Background(), acct(map[string]string{"authority": "http://127.0.0.1:7470"}, pw)); err != nil {
		t.Errorf("loopback authority refused: %v", err)
	}
}

func TestEveryAADSTSCodeExplained(t *testing.T) {
	for code, ex := range aadsts {
		body, _ := json.Marshal(map[string]any{"error": "invalid_grant", "error_description": fmt.Sprintf("AADSTS%d: text.\r\nTrace ID: t", code),
			"error_codes": []int{code}, "trace_id": "t-1", "correlation_id": "c-1"})
		e := errorFromBody(400, body)
		if e.Reason != ex.reason || e.Code != fmt.Sprintf("AADSTS%d", code) || e.Action == "" || e.SupportIDs["correlation_id"] != "c-1" ||
			!strings.HasSuffix(e.Message, "text.") {
			t.Errorf("AADSTS%d → %+v", code, e)
		}
	}
	e := errorFromBody(400, []byte(`{"error":"invalid_client","error_codes":[123456]}`))
	if e.Reason != authplugin.ReasonConfigInvalid || e.Code != "AADSTS123456" {
		t.Errorf("unknown code falls back on the class: %+v", e)
	}
	if e := errorFromBody(502, []byte("<html>bad gateway</html>")); e.Reason != authplugin.ReasonTemporary {
		t.Errorf("a non-OAuth 502 = %+v", e)
	}
}

func TestWrongAccountRefused(t *testing.T) {
	s := &settings{username: "help@contoso.onmicrosoft.com"}
	tok := func(u string) string {
		p, _ := json.Marshal(map[string]string{"preferred_username": u})
		return "e30." + strings.TrimRight(b64(p), "=") + ".sig"
	}
	if _, err := checkAccount(s, tok("HELP@contoso.onmicrosoft.com")); err != nil {
		t.Errorf("same account (other case) refused: %v", err)
	}
	if _, err := checkAccount(s, tok("mallory@contoso.onmicrosoft.com")); !errors.Is(err, authplugin.ErrConfigInvalid) || !strings.Contains(err.Error(), "mallory") {
		t.Errorf("another account = %v", err)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
