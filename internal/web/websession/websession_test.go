package websession

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := New[int](Options{IdleTimeout: time.Hour, MaxAge: 3 * time.Hour, MaxSessions: 2, Now: func() time.Time { return now }})
	create := func(token string) *http.Cookie {
		w := httptest.NewRecorder()
		s.Create(w, &Session[int]{Token: token, TokenID: token})
		c := w.Result().Cookies()[0]
		return c
	}
	get := func(c *http.Cookie) *Session[int] {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(c)
		return s.Get(r)
	}
	a := create("a")
	if !a.HttpOnly || a.SameSite != http.SameSiteStrictMode || a.Secure || a.Path != "/" || a.Name != "mailintake_session" || len(a.Value) < 40 {
		t.Errorf("cookie %+v", a)
	}
	if strings.Contains(a.Value, "a") && a.Value == "a" {
		t.Errorf("the cookie holds the token")
	}
	if got := get(a); got == nil || got.Token != "a" {
		t.Fatalf("Get = %v", got)
	}
	if get(&http.Cookie{Name: a.Name, Value: a.Value + "x"}) != nil {
		t.Error("a forged id was accepted")
	}
	// Idle timeout, refreshed by use; then the absolute lifetime.
	now = now.Add(50 * time.Minute)
	if get(a) == nil {
		t.Fatal("expired too early")
	}
	now = now.Add(50 * time.Minute)
	if get(a) == nil {
		t.Fatal("use did not refresh the idle timeout")
	}
	now = now.Add(61 * time.Minute)
	if get(a) != nil {
		t.Error("an idle session lived on")
	}
	b := create("b")
	for range 5 {
		now = now.Add(50 * time.Minute)
		get(b)
	}
	if get(b) != nil {
		t.Error("a session outlived its maximum age")
	}
	// At most MaxSessions: the least recently used goes.
	c1, c2 := create("c1"), create("c2")
	now = now.Add(time.Minute)
	get(c1)
	create("c3")
	if get(c2) != nil || get(c1) == nil || s.Len() != 2 {
		t.Errorf("eviction: c1 %v c2 %v len %d", get(c1), get(c2), s.Len())
	}
	// End and EndToken.
	w := httptest.NewRecorder()
	s.End(w, get(c1))
	if get(c1) != nil || w.Result().Cookies()[0].MaxAge >= 0 {
		t.Error("End")
	}
	c3 := create("c3")
	s.EndToken("c3")
	if get(c3) != nil {
		t.Error("EndToken")
	}
}

func TestSecureCookie(t *testing.T) {
	s := New[int](Options{Secure: true})
	w := httptest.NewRecorder()
	s.Create(w, &Session[int]{Token: "x"})
	c := w.Result().Cookies()[0]
	if !c.Secure || c.Name != "__Host-mailintake_session" || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %+v", c)
	}
}
