package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// The web page's listener follows the API's rule: plaintext only on loopback; with
// --tls-cert it is HTTPS and its session cookie Secure. (make test-ui drives the page itself in
// a browser.)
func TestWebPageListener(t *testing.T) {
	out, err := exec.Command(filepath.Join(bins(t), "mailintaked"), "--listen", freeAddr(t), "--http-listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve the web page on 0.0.0.0:0 without TLS") {
		t.Errorf("the web page on 0.0.0.0 without TLS: %v\n%s", err, out)
	}

	data := t.TempDir()
	addr := freeAddr(t)
	d := startDaemon(t, data, "--http-listen", addr)
	if !strings.Contains(d.logs.String(), `msg="serving the web page" component=web url=http://`+addr+"/") {
		t.Errorf("the log does not give the page's URL:\n%s", d.logs.String())
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="token"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("the page: %d\n%s", resp.StatusCode, body)
	}
	d.stop(t)

	ca := testutil.NewCA(t)
	cert, key := ca.IssueFiles(t, "server", "127.0.0.1", "localhost")
	addr = freeAddr(t)
	data = t.TempDir()
	d = startDaemon(t, data, "--tls-cert", cert, "--tls-key", key, "--http-listen", addr)
	if !strings.Contains(d.logs.String(), "url=https://"+addr+"/") {
		t.Errorf("the log does not give the page's https URL:\n%s", d.logs.String())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.PostForm("https://"+addr+"/signin", url.Values{"token": {strings.TrimSpace(string(token))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	set := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(set, "__Host-mailintake_session=") || !strings.Contains(set, "Secure") || !strings.Contains(set, "HttpOnly") {
		t.Errorf("signing in over HTTPS: %d %q", resp.StatusCode, set)
	}
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS page: %d", resp.StatusCode)
		}
	}
}
