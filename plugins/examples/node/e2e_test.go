package nodetoken_test

import (
	"bytes"
	"fmt"
	"net"
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

// The Node provider through the real server and CLI: listed by `providers`, a bad field named
// by `mailbox add`, the stored token accepted by an IMAP server in `mailbox test`, an expired one
// shown with the provider's code and action, a message delivered, and the server's stop not
// waiting for the provider.
func TestThroughTheServer(t *testing.T) {
	plugins, _ := install(t)
	bin := buildServer(t)
	srv := imaptest.Start(t, imaptest.Options{ValidateToken: func(tok, user string) bool { return tok == token && user == "ops@example.com" }})
	srv.AddUser(t, "ops@example.com", "unused-password")
	srv.Append(t, "ops@example.com", "INBOX", []byte("From: a@example.net\r\nSubject: through node\r\n\r\nhello\r\n"))

	data := t.TempDir()
	addr := freeAddr(t)
	var logs syncBuf
	d := exec.Command(filepath.Join(bin, "mailintaked"), "--listen", addr, "--data-dir", data, "--plugin-dir", plugins, "--log-level", "debug")
	d.Stdout, d.Stderr = &logs, &logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "msg=serving"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("mailintaked did not start:\n%s", logs.String())
		}
	}
	cli := func(stdin string, args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "mailintake"), append([]string{"--addr", addr, "--data-dir", data}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}

	code, out := cli("", "providers")
	if code != 0 || !strings.Contains(out, "nodetoken") || !strings.Contains(out, "token") || !strings.Contains(out, "lifetime_seconds") {
		t.Fatalf("providers: exit %d\n%s", code, out)
	}
	def := []string{"--tenant", "acme", "--name", "Ops", "--host", "127.0.0.1", "--port", strconv.Itoa(srv.Port), "--security", "none",
		"--username", "ops@example.com", "--provider", "nodetoken", "--secret-field", "token", "--secret-stdin", "--start-from", "all"}

	code, out = cli(token, append(append([]string{"mailbox", "add"}, def...), "--config", "lifetime_seconds=soon")...)
	if code != 1 || !strings.Contains(out, "mailbox.auth_config.lifetime_seconds") {
		t.Errorf("add with a bad field: exit %d, want 1 naming mailbox.auth_config.lifetime_seconds\n%s", code, out)
	}
	code, out = cli(token, append([]string{"mailbox", "test"}, def...)...)
	if code != 0 || srv.TokenLogins.Load() == 0 {
		t.Errorf("mailbox test: exit %d, %d token logins\n%s", code, srv.TokenLogins.Load(), out)
	}
	code, out = cli(token, append(append([]string{"mailbox", "test"}, def...), "--config", "not_after=2020-01-01T00:00:00Z")...)
	if code != 1 || !strings.Contains(out, "TOKEN_EXPIRED") || !strings.Contains(out, "Store a new token") {
		t.Errorf("mailbox test with an expired token: exit %d, want 1 with the provider's code and action\n%s", code, out)
	}
	code, out = cli(token, append(append([]string{"mailbox", "add"}, def...), "--config", "lifetime_seconds=3600")...)
	if code != 0 {
		t.Fatalf("add: exit %d\n%s", code, out)
	}
	code, out = cli("", "tail", "--ack", "--timeout", "10s", "--limit", "1")
	if code != 0 || !strings.Contains(out, "through node") {
		t.Errorf("tail: exit %d, want the message delivered\n%s", code, out)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the server's debug logs contain the token")
	}

	d.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mailintaked exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mailintaked did not stop after SIGTERM\n%s", logs.String())
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	if s := logs.String(); strings.Contains(s, "failed to exit gracefully") {
		t.Errorf("the provider did not stop when the server asked:\n%s", s)
	}
}

var (
	serverOnce sync.Once
	serverBin  string
	serverErr  error
)

// buildServer builds mailintaked and the CLI once per test binary.
func buildServer(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		serverBin = filepath.Join(installRoot, "bin") // install ran first: removed by TestMain
		cmd := exec.Command("go", "build", "-o", serverBin+string(os.PathSeparator), "./server/cmd/mailintaked", "./client/cmd/mailintake")
		cmd.Dir = testutil.ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			serverErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
