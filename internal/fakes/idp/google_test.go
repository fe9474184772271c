package idp

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// signInCode runs the authorization endpoint as a browser would and returns the code it
// redirects with.
func signInCode(t *testing.T, base string, q url.Values) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/o/oauth2/v2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != q.Get("state") {
		t.Fatalf("authorize: %d %s", resp.StatusCode, loc)
	}
	return loc.Query().Get("code")
}

func post(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestGoogleFake(t *testing.T) {
	g := NewGoogle()
	g.AddUser(GoogleUser{Email: "help@example.com"})
	g.AddClient(GoogleClient{ID: "1-x.apps.googleusercontent.com", Secret: "s"})
	hs := httptest.NewServer(g)
	defer hs.Close()
	verifier := "v-0123456789012345678901234567890123456789012"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {"1-x.apps.googleusercontent.com"}, "redirect_uri": {"http://127.0.0.1:5555/"}, "response_type": {"code"},
		"scope": {"https://mail.google.com/ openid email"}, "state": {"st"}, "access_type": {"offline"}, "login_hint": {"help@example.com"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	redeem := func(code, verifier string) (int, map[string]any) {
		return post(t, hs.URL+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"1-x.apps.googleusercontent.com"},
			"client_secret": {"s"}, "redirect_uri": {"http://127.0.0.1:5555/"}, "code_verifier": {verifier}})
	}
	code := signInCode(t, hs.URL, q)
	if st, m := redeem(code, "wrong"); st != 400 || m["error_description"] != "Invalid code verifier." {
		t.Errorf("wrong verifier: %d %v", st, m)
	}
	st, tok := redeem(code, verifier)
	if st != 200 || tok["refresh_token"] == nil || tok["id_token"] == nil {
		t.Fatalf("exchange: %d %v", st, tok)
	}
	if st, m := redeem(code, verifier); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("a code used twice: %d %v", st, m)
	}

	// The ID token is signed with a key of /oauth2/v3/certs and names the account.
	resp, err := http.Get(hs.URL + "/oauth2/v3/certs")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct{ N, E, Kid string }
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	parts := strings.Split(tok["id_token"].(string), ".")
	n, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0].N)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}, crypto.SHA256, h[:], sig); err != nil {
		t.Errorf("ID token signature: %v", err)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(claims), `"email":"help@example.com"`) {
		t.Errorf("claims %s", claims)
	}

	// Introspection (Dovecot) and tokeninfo.
	at := tok["access_token"].(string)
	if _, m := post(t, hs.URL+"/introspect", url.Values{"token": {at}}); m["active"] != true || m["username"] != "help@example.com" {
		t.Errorf("introspect: %v", m)
	}
	if _, m := post(t, hs.URL+"/introspect", url.Values{"token": {"nope"}}); m["active"] != false {
		t.Errorf("introspect of an unknown token: %v", m)
	}
	resp, err = http.Get(hs.URL + "/tokeninfo?access_token=" + url.QueryEscape(at))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("tokeninfo: %v", err)
	}
	resp.Body.Close()

	// A second sign-in without prompt=consent gets no refresh token, as at Google.
	code = signInCode(t, hs.URL, q)
	if _, m := redeem(code, verifier); m["refresh_token"] != nil {
		t.Errorf("a refresh token without the consent screen")
	}
	q.Set("prompt", "consent")
	code = signInCode(t, hs.URL, q)
	if _, m := redeem(code, verifier); m["refresh_token"] == nil {
		t.Errorf("no refresh token with prompt=consent")
	}

	// A token without the Gmail scope is not active for Dovecot.
	g.UntickGmail(true)
	code = signInCode(t, hs.URL, q)
	if _, m := redeem(code, verifier); m["scope"] == nil || strings.Contains(m["scope"].(string), "mail.google.com") {
		t.Errorf("unticked Gmail granted: %v", m)
	} else if _, in := post(t, hs.URL+"/introspect", url.Values{"token": {m["access_token"].(string)}}); in["active"] != false {
		t.Errorf("a token without Gmail is active: %v", in)
	}
}
