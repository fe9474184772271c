package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/testutil"
)

// These tests drive the real binaries as a user would: the daemon, the CLI, and the basic
// plugin as a subprocess of the daemon.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func bins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "mailintake-bin-")
		if binErr != nil {
			return
		}
		if binErr = goBuild("", "-o", binDir+"/", "./server/cmd/mailintaked", "./client/cmd/mailintake", "./plugins/basic/cmd/mailintake-auth-basic", "./plugins/o365/cmd/mailintake-auth-o365"); binErr != nil {
			return
		}
		binErr = goBuild(filepath.Join("plugins", "examples", "statictoken"), "-o", filepath.Join(binDir, "mailintake-auth-statictoken"), ".")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// goBuild runs "go build args..." in a directory of the module.
func goBuild(dir string, args ...string) error {
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = filepath.Join(testutil.ModuleRoot(), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %v: %s", args, err, out)
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type daemon struct {
	cmd  *exec.Cmd
	logs *syncBuf
	addr string
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startDaemon(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	for attempt := 1; ; attempt++ {
		d := &daemon{logs: &syncBuf{}, addr: freeAddr(t)}
		args := append([]string{"--listen", d.addr, "--data-dir", dataDir, "--log-level", "debug"}, extra...)
		d.cmd = exec.Command(filepath.Join(bins(t), "mailintaked"), args...)
		d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(d.logs.String(), "msg=serving") {
			if strings.Contains(d.logs.String(), "address already in use") && attempt < 3 {
				// The free port was taken between freeAddr and the daemon's listen (tests of
				// other packages run at the same time): another port.
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("daemon did not start:\n%s", d.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Contains(d.logs.String(), "msg=serving") {
			return d
		}
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM:\n%s", err, d.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not stop after SIGTERM")
	}
	if !strings.Contains(d.logs.String(), "msg=stopped") {
		t.Errorf("no graceful stop in the logs")
	}
}

// cli runs the CLI and returns its exit code, stdout and stderr.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins(t), "mailintake"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

const password = "S3cret-pa55word-for-the-e2e-test"

// A server given another secret key than the one its database was set up with refuses to start,
// saying so, instead of failing later on every stored secret.
func TestRefusesAnotherSecretKey(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data)
	d.stop(t)
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bins(t), "mailintaked"), "--listen", freeAddr(t), "--data-dir", data, "--secret-key-file", other)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a server with another key did not exit within 30 s")
	}
	if err == nil || !strings.Contains(string(out), "secret key does not match") {
		t.Errorf("exit %v, output:\n%s", err, out)
	}
}

func TestEndToEnd(t *testing.T) {
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}

	st, err := os.Stat(filepath.Join(data, "admin.token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v, mode %v", err, st)
	}

	code, out, errs := cli(t, "", append(g, "providers")...)
	if code != 0 || !strings.Contains(out, "basic") || !strings.Contains(out, "password") || !strings.Contains(out, "secret") {
		t.Fatalf("providers: exit %d\n%s%s", code, out, errs)
	}

	add := append(g, "mailbox", "add", "--name", "Support", "--host", "imap.example.com", "--username", "support@example.com",
		"--provider", "basic", "--password-stdin", "--tenant", "acme", "--json")
	code, out, errs = cli(t, password+"\n", add...)
	if code != 0 {
		t.Fatalf("mailbox add: exit %d: %s", code, errs)
	}
	var created struct {
		ID   string `json:"id"`
		Port int    `json:"port"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || created.Port != 993 {
		t.Fatalf("mailbox add printed %q (%v)", out, err)
	}

	// Bad input exits 1 naming the field, and writes nothing.
	for _, c := range []struct {
		flags []string
		field string
	}{
		{[]string{"--host", ""}, "mailbox.host"},
		{[]string{"--host", "imap.example.com", "--port", "0"}, "mailbox.port"},
		{[]string{"--host", "imap.example.com", "--port", "70000"}, "mailbox.port"},
		{[]string{"--host", "imap.example.com", "--provider", "nope"}, "mailbox.auth_provider"},
		{[]string{"--host", "imap.example.com", "--security", "smtps"}, "mailbox.security"},
		{[]string{"--host", "imap.example.com", "--config", "mechanism=CRAM-MD5"}, "mailbox.auth_config.mechanism"},
	} {
		args := append(append(g, "mailbox", "add", "--name", "X", "--username", "u", "--provider", "basic", "--password-stdin", "--tenant", "acme"), c.flags...)
		code, _, errs := cli(t, password, args...)
		if code != 1 || !strings.Contains(errs, c.field) {
			t.Errorf("add %v: exit %d, stderr %q; want exit 1 naming %s", c.flags, code, errs, c.field)
		}
	}
	code, out, _ = cli(t, "", append(g, "mailbox", "list")...)
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, created.ID) {
		t.Fatalf("mailbox list after bad input: exit %d\n%s", code, out)
	}

	// Without a token: exit 3. A tenant token does not see another tenant's mailbox.
	code, _, errs = cli(t, "", "--addr", d.addr, "mailbox", "list")
	if code != 3 {
		t.Errorf("list without a token: exit %d (%s), want 3", code, errs)
	}
	code, _, errs = cli(t, "", "--addr", d.addr, "--token", "mit_0000000000000000_nope", "mailbox", "list")
	if code != 3 || !strings.Contains(errs, "not authenticated") {
		t.Errorf("list with a bad token: exit %d (%s), want 3", code, errs)
	}
	code, tok, errs := cli(t, "", append(g, "token", "create", "--tenant", "globex")...)
	if code != 0 || !strings.HasPrefix(tok, "mit_") {
		t.Fatalf("token create: exit %d %q %s", code, tok, errs)
	}
	globex := []string{"--addr", d.addr, "--token", strings.TrimSpace(tok)}
	code, out, _ = cli(t, "", append(globex, "mailbox", "list")...)
	if code != 0 || strings.Contains(out, created.ID) {
		t.Errorf("globex list: exit %d\n%s", code, out)
	}
	code, _, errs = cli(t, "", append(globex, "mailbox", "get", created.ID)...)
	if code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("globex get of acme's mailbox: exit %d %s", code, errs)
	}

	// Unreachable server: exit 3. Usage error: exit 2.
	if code, _, _ := cli(t, "", "--addr", freeAddr(t), "--token", "x", "mailbox", "list"); code != 3 {
		t.Errorf("unreachable: exit %d, want 3", code)
	}
	if code, _, _ := cli(t, "", append(g, "mailbox", "frobnicate")...); code != 2 {
		t.Errorf("usage error: exit %d, want 2", code)
	}
	if code, out, errs := cli(t, "", append(g, "tail", "--timeout", "300ms", "--quiet")...); code != 0 || !strings.HasPrefix(out, "0 messages") {
		t.Errorf("tail --timeout with nothing to deliver: exit %d %q %q", code, out, errs)
	}

	// Restart: the mailbox is intact, and SIGTERM stops the daemon gracefully.
	d.stop(t)
	logs := d.logs.String()
	d = startDaemon(t, data)
	g[1] = d.addr
	code, out, _ = cli(t, "", append(g, "mailbox", "get", created.ID, "--json")...)
	var got struct {
		Username       string   `json:"username"`
		AuthSecretsSet []string `json:"authSecretsSet"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Username != "support@example.com" || len(got.AuthSecretsSet) != 1 {
		t.Errorf("after restart: exit %d, %v\n%s", code, err, out)
	}
	if strings.Contains(out, password) {
		t.Errorf("get returned the password")
	}
	d.stop(t)
	logs += d.logs.String()

	if strings.Contains(logs, password) {
		t.Errorf("the daemon's debug logs contain the password")
	}
	filepath.WalkDir(data, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(password)) {
			t.Errorf("%s contains the password in plain text", path)
		}
		return nil
	})
}

func TestParseOffline(t *testing.T) {
	eml := filepath.Join(t.TempDir(), "m.eml")
	os.WriteFile(eml, []byte("From: Alice <alice@example.com>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello\r\n"), 0o600)
	code, out, errs := cli(t, "", "parse", eml)
	var msg struct {
		Envelope struct {
			Subject string `json:"subject"`
		} `json:"envelope"`
		TextBody string `json:"textBody"`
	}
	if err := json.Unmarshal([]byte(out), &msg); code != 0 || err != nil || msg.Envelope.Subject != "Grüße" || msg.TextBody != "Hello\r\n" {
		t.Errorf("parse: exit %d, %v\n%s%s", code, err, out, errs)
	}
	code, out, _ = cli(t, "From: a@b.c\r\n\r\nx", "parse", "-")
	if code != 0 || !strings.Contains(out, "a@b.c") {
		t.Errorf("parse -: exit %d %s", code, out)
	}
	if code, _, _ := cli(t, "", "parse", "/does/not/exist.eml"); code != 1 {
		t.Errorf("parse of a missing file: exit %d, want 1", code)
	}
}

func TestRefusesPlaintextOnTheNetwork(t *testing.T) {
	cmd := exec.Command(filepath.Join(bins(t), "mailintaked"), "--listen", "0.0.0.0:0", "--data-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without TLS") {
		t.Errorf("serving 0.0.0.0 without TLS: %v\n%s", err, out)
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	cert, key := ca.IssueFiles(t, "server", "127.0.0.1", "localhost")
	clientCert, clientKey := ca.IssueFiles(t, "client", "psa-backend")
	caFile := ca.CAFile(t)

	// TLS on a non-loopback address is allowed; use loopback here to stay on this machine.
	data := t.TempDir()
	d := startDaemon(t, data, "--tls-cert", cert, "--tls-key", key)
	g := []string{"--addr", d.addr, "--data-dir", data}
	if code, _, errs := cli(t, "", append(g, "--server-ca", caFile, "mailbox", "list")...); code != 0 {
		t.Errorf("list over TLS: exit %d %s", code, errs)
	}
	if code, _, _ := cli(t, "", append(g, "mailbox", "list")...); code != 3 {
		t.Errorf("plaintext to a TLS server: exit %d, want 3", code)
	}
	if code, _, _ := cli(t, "", append(g, "--tls", "mailbox", "list")...); code != 3 {
		t.Errorf("TLS without trusting the CA: exit %d, want 3", code)
	}
	d.stop(t)

	data = t.TempDir()
	d = startDaemon(t, data, "--tls-cert", cert, "--tls-key", key, "--client-ca", caFile)
	g = []string{"--addr", d.addr, "--data-dir", data, "--server-ca", caFile}
	if code, _, _ := cli(t, "", append(g, "mailbox", "list")...); code != 3 {
		t.Errorf("mTLS server, no client certificate: exit %d, want 3", code)
	}
	if code, _, errs := cli(t, "", append(g, "--client-cert", clientCert, "--client-key", clientKey, "mailbox", "list")...); code != 0 {
		t.Errorf("mTLS with a client certificate: exit %d %s", code, errs)
	}
	other := testutil.NewCA(t)
	oc, ok := other.IssueFiles(t, "intruder", "intruder")
	if code, _, _ := cli(t, "", append(g, "--client-cert", oc, "--client-key", ok, "mailbox", "list")...); code != 3 {
		t.Errorf("mTLS with a certificate from another CA: exit %d, want 3", code)
	}
}

// tailLines runs tail and returns the subjects and ids it printed.
func tailLines(t *testing.T, g []string, args ...string) (subjects, ids []string) {
	t.Helper()
	code, out, errs := cli(t, "", append(append(g, "tail"), args...)...)
	if code != 0 {
		t.Fatalf("tail %v: exit %d: %s", args, code, errs)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			ID       string `json:"id"`
			Envelope struct {
				Subject string `json:"subject"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("tail printed %q: %v", line, err)
		}
		subjects = append(subjects, m.Envelope.Subject)
		ids = append(ids, m.ID)
	}
	return subjects, ids
}

// TestTailAndCrashRecovery follows the stream with the CLI, kills the server with SIGKILL in the
// middle, and checks that every unacknowledged message comes again and no acknowledged one does.
func TestTailAndCrashRecovery(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "help@example.com", "pw-1")
	const total = 300
	for i := range total {
		srv.Append(t, "help@example.com", "INBOX", []byte(fmt.Sprintf("From: c%d@example.net\r\nSubject: msg %03d\r\n\r\nbody %d\r\n", i, i, i)))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, _, errs := cli(t, "pw-1", append(g, "mailbox", "add", "--tenant", "acme", "--name", "Help", "--host", "127.0.0.1",
		"--port", strconv.Itoa(srv.Port), "--security", "none", "--username", "help@example.com", "--provider", "basic",
		"--password-stdin", "--start-from", "all", "--after-ack", "keep")...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	acked, _ := tailLines(t, g, "--ack", "--limit", "100")
	unacked, _ := tailLines(t, g, "--limit", "20", "--max-in-flight", "20")
	if len(acked) != 100 || len(unacked) != 20 {
		t.Fatalf("got %d acked and %d unacked", len(acked), len(unacked))
	}
	// SIGKILL: no graceful stop, no chance to save anything more.
	d.cmd.Process.Kill()
	d.cmd.Wait()
	d = startDaemon(t, data)
	g[1] = d.addr
	rest, _ := tailLines(t, g, "--ack", "--timeout", "3s")
	seen := map[string]int{}
	for _, s := range append(append([]string{}, acked...), rest...) {
		seen[s]++
	}
	for _, s := range acked {
		if seen[s] != 1 {
			t.Errorf("%q was acknowledged before the crash and delivered again", s)
		}
	}
	for i := range total {
		if s := fmt.Sprintf("msg %03d", i); seen[s] == 0 {
			t.Errorf("%q was never delivered", s)
		}
	}
	for _, s := range unacked {
		if seen[s] != 1 {
			t.Errorf("%q (unacknowledged at the crash) delivered %d times after it, want 1", s, seen[s])
		}
	}
	if n := len(rest); n != total-100 {
		t.Errorf("after the restart %d messages, want %d", n, total-100)
	}
	// The status and the metrics tell what happened.
	code, out, _ := cli(t, "", append(g, "mailbox", "list", "--json")...)
	if code != 0 || !strings.Contains(out, "Help") {
		t.Errorf("list: %d %s", code, out)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestStatusEventsQuarantineAndMetricsCLI(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "help@example.com", "pw-1")
	srv.Append(t, "help@example.com", "INBOX", []byte("From: a@example.net\r\nSubject: small\r\n\r\nhello\r\n"))
	srv.Append(t, "help@example.com", "INBOX", []byte("From: b@example.net\r\nSubject: too big\r\n\r\n"+strings.Repeat("x", 4000)+"\r\n"))
	data := t.TempDir()
	metricsAddr := freeAddr(t)
	d := startDaemon(t, data, "--metrics-listen", metricsAddr)
	g := []string{"--addr", d.addr, "--data-dir", data}
	def := []string{"--tenant", "acme", "--name", "Help", "--host", "127.0.0.1", "--port", strconv.Itoa(srv.Port), "--security", "none",
		"--username", "help@example.com", "--provider", "basic", "--password-stdin", "--start-from", "all"}

	// Dry run and connection test of an unsaved definition.
	code, out, errs := cli(t, "pw-1", append(append(g, "mailbox", "dry-run"), def...)...)
	if code != 0 || !strings.Contains(out, "would deliver 2 messages") {
		t.Errorf("dry-run: exit %d %q %q", code, out, errs)
	}
	code, out, _ = cli(t, "pw-1", append(append(g, "mailbox", "test"), def...)...)
	if code != 0 || strings.Count(out, "[ok]") != 6 {
		t.Errorf("mailbox test: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "wrong", append(append(g, "mailbox", "test"), def...)...)
	if code != 1 || !strings.Contains(out, "[FAIL] auth") || !strings.Contains(out, "what to do") {
		t.Errorf("mailbox test with a wrong password: exit %d\n%s", code, out)
	}

	code, out, errs = cli(t, "pw-1", append(append(g, "mailbox", "add", "--json", "--max-message-size", "2000"), def...)...)
	if code != 0 {
		t.Fatalf("add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	jsonUnmarshal(out, &mb)
	if s, _ := tailLines(t, g, "--ack", "--timeout", "2s"); len(s) != 1 || s[0] != "small" {
		t.Fatalf("tail = %v", s)
	}
	code, out, _ = cli(t, "", append(g, "quarantine", "list", mb.ID)...)
	if code != 0 || !strings.Contains(out, "too big") || !strings.Contains(out, "over the mailbox's limit") {
		t.Fatalf("quarantine list: exit %d\n%s", code, out)
	}
	qid := strings.Fields(strings.Split(out, "\n")[1])[0]
	if code, _, errs := cli(t, "", append(g, "quarantine", "replay", qid)...); code != 0 {
		t.Fatalf("replay: %s", errs)
	}
	if s, _ := tailLines(t, g, "--ack", "--timeout", "2s"); len(s) != 1 || s[0] != "too big" {
		t.Errorf("after replay tail = %v", s)
	}
	code, out, _ = cli(t, "", append(g, "mailbox", "status", mb.ID)...)
	if code != 0 || !strings.Contains(out, "state:") || !strings.Contains(out, "2 delivered, 2 acknowledged, 0 pending, 0 quarantined") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "", append(g, "mailbox", "events", mb.ID)...)
	for _, kind := range []string{"connect", "deliver", "quarantine", "ack"} {
		if code != 0 || !strings.Contains(out, kind) {
			t.Errorf("events lack %q: exit %d\n%s", kind, code, out)
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mailintake_messages_delivered_total{mailbox="` + mb.ID + `"} 2`,
		`mailintake_messages_acked_total{mailbox="` + mb.ID + `"} 2`,
		`mailintake_messages_quarantined_total{mailbox="` + mb.ID + `"} 1`,
		`mailintake_last_success_timestamp_seconds{mailbox="` + mb.ID + `"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
