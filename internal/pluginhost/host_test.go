package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/testutil"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

type memState struct {
	mu sync.Mutex
	m  map[string][]byte
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
	return nil
}

// set stores a state as another writer would.
func (s *memState) set(id string, st []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = st
}

func (s *memState) get(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newHost(t *testing.T, opts Options) (*Host, *memState, *syncBuffer) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = testutil.PluginDir(t)
	}
	st := &memState{m: map[string][]byte{}}
	logs := &syncBuffer{}
	opts.State = st
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	h := New(opts)
	t.Cleanup(h.Close)
	return h, st, logs
}

func acct(id string, cfg map[string]string) authplugin.Account {
	return authplugin.Account{MailboxID: id, Protocol: "imap", Host: "imap.example.com", Port: 993,
		Username: "alice@example.com", Config: cfg, Secrets: map[string]string{"password": "s3cret-pw"}}
}

func TestDiscoverAndDescribe(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	names, err := h.Discover()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "basic,fake,google,o365,statictoken" {
		t.Fatalf("Discover = %v, want [basic fake google o365 statictoken]", names)
	}
	infos, err := h.Providers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	basic := infos[0]
	if basic.Name != "basic" || len(basic.Fields) != 2 || !basic.Fields[0].Secret || basic.Fields[0].Name != "password" || len(basic.SHA256) != 64 {
		t.Errorf("basic described as %+v", basic)
	}
	if h.Starts("basic") != 1 || h.Pid("basic") == 0 || h.Pid("basic") == os.Getpid() {
		t.Errorf("basic: starts %d, pid %d: want one separate process", h.Starts("basic"), h.Pid("basic"))
	}
	// Reuse: a second call does not start another process.
	if _, err := h.Describe(context.Background(), "basic"); err != nil || h.Starts("basic") != 1 {
		t.Errorf("second Describe: err %v, starts %d", err, h.Starts("basic"))
	}
	if _, err := h.Describe(context.Background(), "nope"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("Describe(nope) = %v, want ErrUnknownProvider", err)
	}
	if _, err := h.Describe(context.Background(), "../basic"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("Describe(../basic) = %v, want ErrUnknownProvider", err)
	}
}

func TestBasicValidateAndIssue(t *testing.T) {
	h, _, logs := newHost(t, Options{})
	ctx := context.Background()
	bad := acct("m1", map[string]string{"mechanism": "CRAM-MD5", "colour": "blue"})
	bad.Secrets = map[string]string{}
	err := h.Validate(ctx, "basic", bad)
	var verr *authplugin.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Validate = %v, want a ValidationError", err)
	}
	fields := map[string]bool{}
	for _, v := range verr.Violations {
		fields[v.Field] = true
	}
	for _, f := range []string{"password", "mechanism", "colour"} {
		if !fields[f] {
			t.Errorf("violations %v do not name %q", verr.Violations, f)
		}
	}
	if err := h.Validate(ctx, "basic", acct("m1", map[string]string{"mechanism": "login"})); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	cred, err := h.Credential(ctx, "basic", acct("m1", map[string]string{"mechanism": "login"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Mechanism != "LOGIN" || cred.Identity != "alice@example.com" || cred.Secret != "s3cret-pw" || !cred.Expiry.IsZero() {
		t.Errorf("Credential = %+v", cred)
	}
	if strings.Contains(logs.String(), "s3cret-pw") {
		t.Errorf("the password appears in the host's logs")
	}
}

func TestCredentialCacheAndState(t *testing.T) {
	now := time.Now()
	var clock sync.Mutex
	h, st, logs := newHost(t, Options{Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }})
	ctx := context.Background()
	a := acct("m1", map[string]string{"ttl": "1h"})
	c1, err := h.Credential(ctx, "fake", a, false)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Secret != "token-1" || string(st.m["m1"]) != "1" {
		t.Fatalf("first credential %q, state %q; want token-1 and state 1", c1.Secret, st.m["m1"])
	}
	// The plugin's own log line (hclog JSON on its stderr) arrives with its level.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"level":"INFO","msg":"issuing credential"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's info log did not reach the host's logger at INFO:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Cached: no new serial.
	if c, _ := h.Credential(ctx, "fake", a, false); c.Secret != "token-1" {
		t.Errorf("cached credential = %q, want token-1", c.Secret)
	}
	// Shortly before expiry: renewed, with the stored state handed back.
	clock.Lock()
	now = now.Add(56 * time.Minute)
	clock.Unlock()
	if c, _ := h.Credential(ctx, "fake", a, false); c.Secret != "token-2" {
		t.Errorf("credential near expiry = %q, want token-2", c.Secret)
	}
	// Forced: renewed even though cached.
	if c, _ := h.Credential(ctx, "fake", a, true); c.Secret != "token-3" {
		t.Errorf("forced credential = %q, want token-3", c.Secret)
	}
	// A changed config is never served from the cache.
	a2 := acct("m1", map[string]string{"ttl": "2h"})
	if c, _ := h.Credential(ctx, "fake", a2, false); c.Secret != "token-4" {
		t.Errorf("credential after a config change = %q, want token-4", c.Secret)
	}
	// Single flight: concurrent callers share one issue.
	h.Invalidate("m1")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := h.Credential(ctx, "fake", a2, false)
			got[i] = c.Secret
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != "token-5" {
			t.Fatalf("concurrent credentials = %v, want all token-5", got)
		}
	}
}

func TestTypedErrorsCrossTheBoundary(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	_, err := h.Credential(context.Background(), "fake", acct("m1", map[string]string{"behavior": "fail"}), false)
	if !errors.Is(err, authplugin.ErrInvalidCredentials) {
		t.Fatalf("err = %v, want ErrInvalidCredentials", err)
	}
	e, _ := authplugin.AsError(err)
	if e.Code != "FAKE42" || e.Action == "" || e.SupportIDs["trace_id"] != "t-1" {
		t.Errorf("error lost detail: %+v", e)
	}
	_, err = h.Credential(context.Background(), "fake", acct("m1", map[string]string{"behavior": "error"}), false)
	if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), "something unexpected") {
		t.Errorf("untyped error = %v, want ErrPluginFailed", err)
	}
}

func TestKilledPluginIsRestarted(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	ctx := context.Background()
	if _, err := h.Describe(ctx, "basic"); err != nil {
		t.Fatal(err)
	}
	pid := h.Pid("basic")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := h.Describe(ctx, "basic"); err != nil {
		t.Fatalf("Describe after SIGKILL = %v, want a restarted plugin", err)
	}
	if h.Starts("basic") != 2 || h.Pid("basic") == pid || h.Pid("basic") == 0 {
		t.Errorf("after SIGKILL: starts %d, pid %d (old %d)", h.Starts("basic"), h.Pid("basic"), pid)
	}
}

// Calls in flight when the provider dies restart it once: each failing call stops only the
// process it used, not the one another call has started meanwhile (with four callers, one
// SIGKILL led to three or four starts, and a caller on its one retry could fail).
func TestConcurrentCallsRestartTheProviderOnce(t *testing.T) {
	h, _, _ := newHost(t, Options{CallTimeout: 20 * time.Second})
	ctx := context.Background()
	control := filepath.Join(t.TempDir(), "behavior")
	if err := os.WriteFile(control, []byte("hang"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Describe(ctx, "fake"); err != nil {
		t.Fatal(err)
	}
	const callers = 4
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := h.Credential(ctx, "fake", acct(fmt.Sprintf("m%d", i), map[string]string{"control": control}), false)
			errs <- err
		}()
	}
	time.Sleep(500 * time.Millisecond) // the calls are in flight, hanging
	if err := os.WriteFile(control, []byte("ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(h.Pid("fake"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("a call in flight when the provider died: %v, want it retried on the new process", err)
		}
	}
	if n := h.Starts("fake"); n != 2 {
		t.Errorf("the provider was started %d times, want 2 (one restart)", n)
	}
}

// Whatever a provider writes to stderr is logged, never parsed into a crash: go-plugin's own
// parser panics (and takes the server down) on an hclog line whose message, level or timestamp
// is not a string.
func TestProviderStderrCannotCrashTheHost(t *testing.T) {
	dir := testutil.CopyPlugins(t, "basic")
	script := "#!/bin/sh\n" +
		"echo '{\"@message\":42,\"@level\":\"error\",\"n\":1}' >&2\n" +
		"echo '{\"@message\":\"x\",\"@level\":7}' >&2\n" +
		"echo '{\"@message\":\"stamp\",\"@timestamp\":1}' >&2\n" +
		"echo '[WARN] plain warning' >&2\n" +
		"echo 'not a handshake'\n"
	if err := os.WriteFile(filepath.Join(dir, "mailintake-auth-noisy"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h, _, logs := newHost(t, Options{Dir: dir})
	if _, err := h.Describe(context.Background(), "noisy"); !errors.Is(err, ErrPluginFailed) {
		t.Fatalf("Describe = %v, want ErrPluginFailed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "plain warning") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"42"`, `"level":"ERROR"`, `"msg":"x"`, `"msg":"stamp"`, `"level":"WARN","msg":"plain warning"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	// The host still serves other providers.
	if _, err := h.Describe(context.Background(), "basic"); err != nil {
		t.Errorf("basic after the noisy provider: %v", err)
	}
}

func TestCrashingAndHangingPlugins(t *testing.T) {
	h, _, _ := newHost(t, Options{CallTimeout: 2 * time.Second})
	ctx := context.Background()
	_, err := h.Credential(ctx, "fake", acct("m1", map[string]string{"behavior": "crash"}), false)
	if !errors.Is(err, ErrPluginFailed) {
		t.Errorf("crash: err = %v, want ErrPluginFailed", err)
	}
	start := time.Now()
	_, err = h.Credential(ctx, "fake", acct("m2", map[string]string{"behavior": "hang"}), false)
	if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("hang: err = %v, want ErrPluginFailed (deadline)", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("hang: the call took %s; the deadline did not hold", d)
	}
	// The provider still serves other mailboxes afterwards.
	c, err := h.Credential(ctx, "fake", acct("m3", nil), false)
	if err != nil || c.Secret != "token-1" {
		t.Errorf("after crash and hang: %q, %v", c.Secret, err)
	}
}

func TestPinnedSHA256(t *testing.T) {
	dir := testutil.CopyPlugins(t, "basic")
	good, err := fileSHA256(filepath.Join(dir, "mailintake-auth-basic"))
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := newHost(t, Options{Dir: dir, Pins: map[string]string{"basic": good}})
	if _, err := h.Describe(context.Background(), "basic"); err != nil {
		t.Fatalf("matching pin refused: %v", err)
	}
	h.Close()

	bad := strings.Repeat("0", 64)
	h2, _, _ := newHost(t, Options{Dir: dir, Pins: map[string]string{"basic": bad}})
	_, err = h2.Describe(context.Background(), "basic")
	if !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), good) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("mismatched pin: err = %v, want ErrPinMismatch naming the actual hash and the pinned one", err)
	}
	if h2.Pid("basic") != 0 {
		t.Errorf("a plugin with a mismatched pin is running")
	}
}

// TestThirdPartyExample builds the example provider from its own module, pins it and uses it.
func TestThirdPartyExample(t *testing.T) {
	dir := testutil.CopyPlugins(t, "statictoken")
	sum, err := fileSHA256(filepath.Join(dir, "mailintake-auth-statictoken"))
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := newHost(t, Options{Dir: dir, Pins: map[string]string{"statictoken": sum}})
	infos, err := h.Providers(context.Background())
	if err != nil || len(infos) != 1 || infos[0].Name != "statictoken" || infos[0].SHA256 != sum {
		t.Fatalf("Providers = %+v, %v", infos, err)
	}
	a := authplugin.Account{MailboxID: "m1", Username: "u@example.com", Config: map[string]string{"lifetime": "1h"}, Secrets: map[string]string{"token": "tok-123"}}
	if err := h.Validate(context.Background(), "statictoken", a); err != nil {
		t.Fatal(err)
	}
	c, err := h.Credential(context.Background(), "statictoken", a, false)
	if err != nil || c.Mechanism != "XOAUTH2" || c.Secret != "tok-123" || c.Expiry.IsZero() {
		t.Fatalf("Credential = %+v, %v", c, err)
	}
	h2, _, _ := newHost(t, Options{Dir: dir, Pins: map[string]string{"statictoken": strings.Repeat("1", 64)}})
	if _, err := h2.Describe(context.Background(), "statictoken"); !errors.Is(err, ErrPinMismatch) {
		t.Errorf("a wrong pin: %v", err)
	}
}

func TestGarbageCredentialsAreRefused(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	_, err := h.Credential(context.Background(), "fake", acct("m1", map[string]string{"behavior": "garbage"}), false)
	if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), "unusable credential") {
		t.Errorf("garbage: err = %v, want ErrPluginFailed naming an unusable credential", err)
	}
}

// A refresh that fails because the plugin does (not because the provider refused) keeps
// serving the cached credential until it expires.
func TestCachedCredentialOutlivesAFailingPlugin(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	h, _, _ := newHost(t, Options{CallTimeout: 2 * time.Second, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	control := filepath.Join(t.TempDir(), "behavior")
	a := acct("m1", map[string]string{"ttl": "10m", "control": control})
	b := acct("m2", map[string]string{"ttl": "10m", "control": control})
	c1, err := h.Credential(context.Background(), "fake", a, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Credential(context.Background(), "fake", b, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(control, []byte("crash"), 0o644)
	advance(9 * time.Minute) // past the refresh point, before the expiry
	c2, err := h.Credential(context.Background(), "fake", a, false)
	if err != nil || c2.Secret != c1.Secret {
		t.Errorf("refresh with a crashing plugin: %q, %v; want the cached credential", c2.Secret, err)
	}
	if _, err := h.Credential(context.Background(), "fake", a, true); !errors.Is(err, ErrPluginFailed) {
		t.Errorf("a forced refresh (the server refused the credential) = %v, want the plugin failure", err)
	}
	os.WriteFile(control, []byte("fail"), 0o644)
	if _, err := h.Credential(context.Background(), "fake", b, false); errors.Is(err, ErrPluginFailed) || err == nil {
		t.Errorf("a provider's refusal = %v, want it passed on, not hidden by the cache", err)
	}
}

// racyState is a state store where another writer (another replica's session, a connection
// test) stores a newer state right after this host read it.
type racyState struct {
	*memState
	newer []byte
}

func (s *racyState) ProviderState(ctx context.Context, id string) ([]byte, error) {
	st, err := s.memState.ProviderState(ctx, id)
	s.set(id, s.newer)
	return st, err
}

func TestProviderStateIsSwappedNotOverwritten(t *testing.T) {
	rs := &racyState{memState: &memState{m: map[string][]byte{"m1": []byte("5")}}, newer: []byte("99")}
	h := New(Options{Dir: testutil.PluginDir(t), State: rs})
	t.Cleanup(h.Close)
	c, err := h.Credential(context.Background(), "fake", acct("m1", nil), false)
	if err != nil {
		t.Fatalf("a state written meanwhile must not fail the credential: %v", err)
	}
	if c.Secret != "token-6" {
		t.Errorf("credential %q, want token-6 (issued from state 5)", c.Secret)
	}
	if got := string(rs.get("m1")); got != "99" {
		t.Errorf("stored state %q: the newer state 99 was overwritten by the one issued from an older read", got)
	}
	// Without a writer in between, the new state is stored.
	st := &memState{m: map[string][]byte{"m1": []byte("5")}}
	h2 := New(Options{Dir: testutil.PluginDir(t), State: st})
	t.Cleanup(h2.Close)
	if _, err := h2.Credential(context.Background(), "fake", acct("m1", nil), false); err != nil {
		t.Fatal(err)
	}
	if got := string(st.get("m1")); got != "6" {
		t.Errorf("stored state %q, want 6", got)
	}
}

// A real plugin process whose host is killed (SIGKILL: no chance to stop it) exits on its own
// within a few seconds instead of running forever.
func TestPluginExitsWhenItsHostIsKilled(t *testing.T) {
	plugin := filepath.Join(testutil.PluginDir(t), "mailintake-auth-basic")
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The host: a shell that starts the plugin (with go-plugin's handshake cookie, so it
	// serves), records its pid and waits.
	host := exec.Command("sh", "-c", `"$0" >/dev/null 2>&1 & echo $! > "$1"; sleep 60`, plugin, pidFile)
	host.Env = append(os.Environ(), authplugin.Handshake.MagicCookieKey+"="+authplugin.Handshake.MagicCookieValue, "PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000", "PLUGIN_PROTOCOL_VERSIONS=1")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not start")
		}
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	time.Sleep(1500 * time.Millisecond)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the plugin is not running while its host lives: %v", err)
	}
	host.Process.Kill()
	host.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err != nil {
			return // gone (reaped by init)
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			return // exited, not yet reaped
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin is still running 10 s after its host was killed")
		}
	}
}

// A provider that cannot start is listed with its reason, beside the others, at once; its
// failure is remembered for a while (no start per listing) and forgotten when the executable
// changes.
func TestBrokenProviderIsListedWithItsReason(t *testing.T) {
	dir := testutil.CopyPlugins(t, "basic", "fake")
	broken := filepath.Join(dir, "mailintake-auth-broken")
	// A provider that writes a handshake line go-plugin cannot read, then waits.
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'not a handshake'\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, _, _ := newHost(t, Options{Dir: dir, Pins: map[string]string{"fake": strings.Repeat("ab", 32)}})
	start := time.Now()
	infos, err := h.Providers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	byName := map[string]Info{}
	for _, i := range infos {
		byName[i.Name] = i
	}
	if len(infos) != 3 || byName["basic"].Err != nil || len(byName["basic"].Fields) == 0 {
		t.Fatalf("providers = %+v", infos)
	}
	if e := byName["broken"].Err; !errors.Is(e, ErrPluginFailed) || byName["broken"].Path != broken {
		t.Errorf("broken: %v at %q, want ErrPluginFailed", e, byName["broken"].Path)
	}
	if e := byName["fake"].Err; !errors.Is(e, ErrPinMismatch) || !strings.Contains(e.Error(), strings.Repeat("ab", 32)) {
		t.Errorf("pinned fake: %v, want ErrPinMismatch naming the pin", e)
	}
	if took > 5*time.Second {
		t.Errorf("listing with a broken provider took %s", took)
	}
	start = time.Now()
	if _, err := h.Describe(context.Background(), "broken"); !errors.Is(err, ErrPluginFailed) {
		t.Errorf("again: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the remembered failure took %s: the provider was started again", d)
	}
	// Fixed on disk: started again at once.
	real, err := os.ReadFile(filepath.Join(dir, "mailintake-auth-basic"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken+".new", real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(broken+".new", broken); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Describe(context.Background(), "broken"); err != nil {
		t.Errorf("after the fix: %v", err)
	}
}

// An executable's SHA-256 is computed again only when the file changed: Describe runs at every
// mailbox validation.
func TestExecutableHashIsCachedUntilTheFileChanges(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	path := filepath.Join(t.TempDir(), "mailintake-auth-x")
	if err := os.WriteFile(path, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := h.sum(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := h.sum(path); again != first || len(h.sums) != 1 {
		t.Errorf("second sum %s (first %s), %d cached", again, first, len(h.sums))
	}
	if err := os.WriteFile(path, []byte("two, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if changed, _ := h.sum(path); changed == first {
		t.Error("the hash of a changed file was not computed again")
	}
}

// A mailbox that reads and sends keeps a credential per protocol: alternating between IMAP and
// SMTP asks the provider once for each, not at every switch.
func TestCredentialsCachedPerProtocol(t *testing.T) {
	h, _, _ := newHost(t, Options{})
	ctx := context.Background()
	imap := acct("m1", map[string]string{"ttl": "1h"})
	smtp := imap
	smtp.Protocol, smtp.Host, smtp.Port = "smtp", "smtp.example.com", 587
	for i := range 3 {
		ci, err := h.Credential(ctx, "fake", imap, false)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := h.Credential(ctx, "fake", smtp, false)
		if err != nil {
			t.Fatal(err)
		}
		if ci.Secret != "token-1" || cs.Secret != "token-2" {
			t.Fatalf("round %d: imap %q, smtp %q; want token-1 and token-2 from the cache", i, ci.Secret, cs.Secret)
		}
	}
	h.Invalidate("m1")
	if c, _ := h.Credential(ctx, "fake", smtp, false); c.Secret != "token-3" {
		t.Errorf("after Invalidate: %q, want a new credential", c.Secret)
	}
}
