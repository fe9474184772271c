package saslclient

import (
	"bytes"
	"strings"
	"testing"
)

func TestXOAuth2KeepsTheErrorChallenge(t *testing.T) {
	c, err := New(XOAuth2, "u@example.com", "tok", "imap.example.com", 993)
	if err != nil {
		t.Fatal(err)
	}
	mech, ir, _ := c.Start()
	if mech != XOAuth2 || string(ir) != "user=u@example.com\x01auth=Bearer tok\x01\x01" {
		t.Errorf("start = %s %q", mech, ir)
	}
	if Rejection(c) != "" {
		t.Error("a rejection before any challenge")
	}
	resp, err := c.Next([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	if err != nil || len(resp) != 0 {
		t.Errorf("answer to the error challenge = %q, %v; want an empty response", resp, err)
	}
	if r := Rejection(c); r != "token rejected (status 401)" {
		t.Errorf("rejection = %q", r)
	}
	// A challenge that is not JSON is kept as printable text.
	c2 := &XOAuth2Client{User: "u", Token: "t"}
	c2.Next([]byte("bad\x00token\r\n" + strings.Repeat("x", 300)))
	if s := c2.Challenge.Status; strings.ContainsAny(s, "\x00\r\n") || len(s) > 200 || !strings.HasPrefix(s, "bad token") {
		t.Errorf("status = %q", s)
	}
}

func TestOAuthBearerAnswersAnErrorWithOneByte(t *testing.T) {
	c, err := New(OAuthBearer, "u@example.com", "tok", "imap.example.com", 993)
	if err != nil {
		t.Fatal(err)
	}
	if _, ir, _ := c.Start(); !bytes.Contains(ir, []byte("auth=Bearer tok")) || !bytes.Contains(ir, []byte("host=imap.example.com")) {
		t.Errorf("initial response %q", ir)
	}
	resp, err := c.Next([]byte(`{"status":"invalid_token","scope":"x"}`))
	if err != nil || !bytes.Equal(resp, []byte{0x01}) {
		t.Errorf("answer = %q, %v; want 0x01 (RFC 7628 3.2.3)", resp, err)
	}
	if r := Rejection(c); r != "token rejected (invalid_token)" {
		t.Errorf("rejection = %q", r)
	}
}

func TestLoginWithoutInitialResponse(t *testing.T) {
	c, _ := New(Login, "user", "pass", "", 0)
	if _, ir, _ := c.Start(); ir != nil {
		t.Errorf("initial response %q, want none", ir)
	}
	// Prompts in the usual words, in either order; otherwise their order decides.
	if r, _ := c.Next([]byte("Password:")); string(r) != "pass" {
		t.Errorf("to Password: %q", r)
	}
	if r, _ := c.Next([]byte("Username:")); string(r) != "user" {
		t.Errorf("to Username: %q", r)
	}
	if _, err := c.Next([]byte("More?")); err == nil {
		t.Error("a third prompt was answered")
	}
	c, _ = New(Login, "user", "pass", "", 0)
	r1, _ := c.Next([]byte("VXNlcg"))
	r2, _ := c.Next([]byte("?"))
	if string(r1) != "user" || string(r2) != "pass" {
		t.Errorf("by order: %q, %q", r1, r2)
	}
}

func TestNewRefusesUnknownMechanisms(t *testing.T) {
	if _, err := New("CRAM-MD5", "u", "p", "", 0); err == nil {
		t.Error("CRAM-MD5 accepted")
	}
	if c, err := New(Plain, "u", "p", "", 0); err != nil || Rejection(c) != "" {
		t.Errorf("PLAIN: %v", err)
	}
	if !Token(XOAuth2) || !Token(OAuthBearer) || Token(Plain) {
		t.Error("Token")
	}
}
