package guard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	for _, c := range []struct {
		listen string
		extra  []string
		tls    bool
		ok     []string
		bad    []string
	}{
		{"127.0.0.1:7466", nil, false,
			[]string{"127.0.0.1:7466", "localhost:7466", "LocalHost.:7466", "[::1]:7466"},
			[]string{"127.0.0.1", "127.0.0.1:80", "evil.example:7466", "evil.example", "localhost.evil.example:7466", "", ":7466", "127.0.0.2:7466"}},
		{"127.0.0.1:80", nil, false, []string{"127.0.0.1", "localhost", "localhost:80"}, []string{"localhost:443"}},
		{"127.0.0.1:443", nil, true, []string{"localhost", "localhost:443"}, []string{"localhost:80"}},
		{"0.0.0.0:7466", []string{"admin.example.com", "proxy.example.com:8443"}, true,
			[]string{"localhost:7466", "admin.example.com", "admin.example.com:443", "ADMIN.example.com:7466", "proxy.example.com:8443"},
			[]string{"0.0.0.0:7466", "proxy.example.com", "proxy.example.com:443", "10.0.0.5:7466", "evil.example"}},
		{"192.0.2.10:7466", nil, true, []string{"192.0.2.10:7466"}, []string{"localhost:7466", "192.0.2.10"}},
		{"[::1]:7466", nil, false, []string{"[::1]:7466", "localhost:7466"}, []string{"[::2]:7466"}},
	} {
		h, err := NewHosts(c.listen, c.extra, c.tls)
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range c.ok {
			if !h.Allowed(host) {
				t.Errorf("%s %v: %q refused", c.listen, c.extra, host)
			}
		}
		for _, host := range c.bad {
			if h.Allowed(host) {
				t.Errorf("%s %v: %q allowed", c.listen, c.extra, host)
			}
		}
	}
	if _, err := NewHosts("nonsense", nil, false); err == nil {
		t.Error("a listen address without a port was accepted")
	}
	if _, err := NewHosts("127.0.0.1:1", []string{"http://x/"}, false); err == nil {
		t.Error("a URL was accepted as a host name")
	}
}

func TestWrap(t *testing.T) {
	hosts, _ := NewHosts("127.0.0.1:7466", nil, false)
	reached := 0
	h := Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), Options{Hosts: hosts})
	do := func(method, host string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://"+host+"/x", strings.NewReader(""))
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("GET", "127.0.0.1:7466"); w.Code != 200 || w.Header().Get("Content-Security-Policy") != CSP || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET: %d %v", w.Code, w.Header())
	}
	if w := do("GET", "evil.example:7466"); w.Code != http.StatusMisdirectedRequest || w.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("another host: %d", w.Code)
	}
	if w := do("POST", "127.0.0.1:7466", "Sec-Fetch-Site", "cross-site"); w.Code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", w.Code)
	}
	if w := do("POST", "127.0.0.1:7466", "Origin", "http://127.0.0.1:9999"); w.Code != http.StatusForbidden {
		t.Errorf("POST from another port's origin: %d", w.Code)
	}
	if w := do("POST", "127.0.0.1:7466", "Sec-Fetch-Site", "same-origin"); w.Code != 200 {
		t.Errorf("same-origin POST: %d", w.Code)
	}
	if w := do("GET", "127.0.0.1:7466", "Sec-Fetch-Site", "cross-site"); w.Code != 200 {
		t.Errorf("a cross-site GET (a link): %d", w.Code)
	}
	if reached != 3 {
		t.Errorf("the handler ran %d times, want 3", reached)
	}
}
