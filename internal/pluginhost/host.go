// Package pluginhost runs auth provider plugins for the server.
//
// It discovers mailintake-auth-<name> executables in a plugin directory, starts each lazily
// through hashicorp/go-plugin (gRPC protocol, automatic mTLS), reuses one process per provider for
// every mailbox, bounds every call with a deadline, restarts a process that crashed or hung,
// refuses a binary whose SHA-256 does not match its pin, caches credentials until shortly before
// they expire, and stores provider state (refresh tokens) through a [StateStore] that encrypts it.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// DefaultCallTimeout bounds each plugin call when Options.CallTimeout is zero.
const DefaultCallTimeout = 30 * time.Second

// Errors.
var (
	// ErrUnknownProvider: no executable for the provider name in the plugin directory.
	ErrUnknownProvider = errors.New("unknown auth provider")
	// ErrPinMismatch: the executable's SHA-256 differs from its pin.
	ErrPinMismatch = errors.New("auth provider binary does not match its SHA-256 pin")
	// ErrPluginFailed: the plugin crashed, hung past its deadline or answered garbage.
	ErrPluginFailed = errors.New("auth provider plugin failed")
)

// StateStore persists provider state. The store encrypts it at rest.
type StateStore interface {
	ProviderState(ctx context.Context, mailboxID string) ([]byte, error)
	// SwapProviderState replaces the state only if it is still old (store.ErrConflict
	// otherwise), so a newer state written meanwhile (a refresh token another replica rotated)
	// is never overwritten by an older reader.
	SwapProviderState(ctx context.Context, mailboxID string, old, new []byte) error
}

// Options configure a Host.
type Options struct {
	// Dir is the plugin directory.
	Dir string
	// Pins maps a provider name to the lower-case hex SHA-256 its executable must have.
	Pins map[string]string
	// CallTimeout bounds each call; zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// StartTimeout bounds a plugin's start-up; zero means 10 seconds.
	StartTimeout time.Duration
	// State stores provider state.
	State StateStore
	// Logger receives the host's and the plugins' logs.
	Logger *slog.Logger
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
}

// Info describes an installed provider.
type Info struct {
	authplugin.Description
	Path   string // the executable
	SHA256 string // its SHA-256, lower-case hex
	// Err is set, by Providers, for a provider that is installed but cannot be used; its
	// Description then holds only its name.
	Err error
}

// failureMemory is how long a provider that failed to start answers with the same failure
// instead of being started again, while its executable stays the same: a listing or a
// validation then answers at once instead of waiting for another failed start.
const failureMemory = 15 * time.Second

// Host runs provider plugins. It is safe for concurrent use.
type Host struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	plugins map[string]*managed

	cacheMu sync.Mutex
	cache   map[string]*cacheEntry
	flights map[string]*sync.Mutex

	sumsMu sync.Mutex
	sums   map[string][2]string // executable → its stamp and SHA-256 then
}

// sum returns an executable's SHA-256, hashing it again only when its size or modification
// time changed: Describe runs at every mailbox validation, and hashing a provider of tens of
// megabytes each time was half of the server's CPU while 200 mailboxes were added.
func (h *Host) sum(path string) (string, error) {
	st := stamp(path)
	// Held while hashing: many validations at once (200 mailboxes added together) hash once.
	h.sumsMu.Lock()
	defer h.sumsMu.Unlock()
	if c, ok := h.sums[path]; ok && st != "" && c[0] == st {
		return c[1], nil
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	if h.sums == nil {
		h.sums = map[string][2]string{}
	}
	h.sums[path] = [2]string{st, sum}
	return sum, nil
}

type managed struct {
	name   string
	path   string
	mu     sync.Mutex // serialises start and restart
	client *plugin.Client
	cmd    *exec.Cmd // the client's process
	prov   *authplugin.Client
	starts int

	// The last failed start, its time, and the executable's size and time then.
	failed   error
	failedAt time.Time
	failedOf string
}

// stamp identifies a version of an executable cheaply: its size and modification time.
func stamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprint(st.Size(), st.ModTime().UnixNano())
}

// New returns a Host. It starts nothing until a provider is first used.
func New(opts Options) *Host {
	if opts.CallTimeout == 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Host{
		opts:    opts,
		log:     opts.Logger,
		plugins: map[string]*managed{},
		cache:   map[string]*cacheEntry{},
		flights: map[string]*sync.Mutex{},
	}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Discover lists the provider names in the plugin directory, sorted.
func (h *Host) Discover() ([]string, error) {
	entries, err := os.ReadDir(h.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading plugin directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), authplugin.ExecutablePrefix)
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, ".exe")
		if !validName.MatchString(name) {
			continue
		}
		if st, err := os.Stat(filepath.Join(h.opts.Dir, e.Name())); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// path returns the executable of a provider.
func (h *Host) path(name string) (string, error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("%w %q", ErrUnknownProvider, name)
	}
	p := filepath.Join(h.opts.Dir, authplugin.ExecutablePrefix+name)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w %q: no executable %s in %s", ErrUnknownProvider, name, filepath.Base(p), h.opts.Dir)
	}
	return p, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}

// client returns the running provider, starting it when needed.
func (h *Host) client(name string) (*managed, *authplugin.Client, error) {
	h.mu.Lock()
	m, ok := h.plugins[name]
	if !ok {
		p, err := h.path(name)
		if err != nil {
			h.mu.Unlock()
			return nil, nil, err
		}
		m = &managed{name: name, path: p}
		h.plugins[name] = m
	}
	h.mu.Unlock()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil && !m.client.Exited() {
		return m, m.prov, nil
	}
	if m.client != nil {
		h.log.Warn("auth provider plugin exited; restarting", "provider", name)
		// Kill asks the provider to shut down, then waits for its output pipes: a child that
		// holds them (a script provider's interpreter) is killed with its group after 2 s,
		// and in any case once the provider is gone.
		t := time.AfterFunc(2*time.Second, func() { killGroup(m.cmd) })
		m.client.Kill()
		t.Stop()
		killGroup(m.cmd)
		m.client = nil
	}
	if m.failed != nil && h.opts.Now().Sub(m.failedAt) < failureMemory && stamp(m.path) == m.failedOf {
		return nil, nil, m.failed
	}
	m.failed = nil
	prov, err := h.start(m)
	if err != nil {
		m.failed, m.failedAt, m.failedOf = err, h.opts.Now(), stamp(m.path)
		return nil, nil, err
	}
	return m, prov, nil
}

// start starts a provider's process; m.mu is held.
func (h *Host) start(m *managed) (*authplugin.Client, error) {
	name := m.name
	cmd := command(m.path)
	cfg := authplugin.ClientConfig(cmd)
	cfg.Logger = newHCLogger(h.log.With("provider", name), filepath.Base(m.path))
	cfg.Stderr = &stderrLogger{l: h.log.With("provider", name)} // go-plugin's own parser is muted: see slogAdapter
	cfg.SyncStdout = &lineLogger{l: h.log.With("provider", name), stream: "stdout"}
	cfg.SyncStderr = &lineLogger{l: h.log.With("provider", name), stream: "stderr"}
	cfg.StartTimeout = h.opts.StartTimeout
	cfg.Managed = false
	if pin, ok := h.opts.Pins[name]; ok {
		sum, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(pin)))
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%w: the pin for %q is not a SHA-256 in hex", ErrPinMismatch, name)
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	c := plugin.NewClient(cfg)
	// Connect also checks the provider's health: a provider that does not report SERVING for
	// the service "plugin" is refused, and so is one whose certificate or protocol version
	// does not fit (it says so, naming both versions).
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.StartTimeout)
	defer cancel()
	prov, err := authplugin.Connect(ctx, c)
	if err != nil {
		killGroup(cmd) // first: c.Kill waits for the output pipes, which a child may hold
		c.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			actual, _ := fileSHA256(m.path)
			return nil, fmt.Errorf("%w: %s has SHA-256 %s but is pinned to %s; refusing to run it (if it was replaced on purpose, pin the new hash)",
				ErrPinMismatch, m.path, actual, hex.EncodeToString(cfg.SecureConfig.Checksum))
		}
		return nil, fmt.Errorf("%w: starting %s: %v", ErrPluginFailed, m.path, err)
	}
	m.client, m.cmd, m.prov = c, cmd, prov
	m.starts++
	h.log.Info("auth provider plugin started", "provider", name, "path", m.path, "pid", c.ReattachConfig().Pid, "starts", m.starts)
	return prov, nil
}

// kill stops a provider's process so that the next call starts a new one.
//
// used is the process's client a failing call used: when the provider was restarted since (by
// another call that failed at the same time), the new process is left alone. nil stops
// whatever runs.
func (h *Host) kill(m *managed, used *authplugin.Client, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if used != nil && m.prov != used {
		return
	}
	if m.client != nil {
		h.log.Warn("stopping auth provider plugin", "provider", m.name, "reason", reason)
		// Kill asks the provider to shut down, then waits for its output pipes: a child that
		// holds them (a script provider's interpreter) is killed with its group after 2 s,
		// and in any case once the provider is gone.
		t := time.AfterFunc(2*time.Second, func() { killGroup(m.cmd) })
		m.client.Kill()
		t.Stop()
		killGroup(m.cmd)
		m.client = nil
	}
}

// transportFailure reports whether err means the plugin process is gone or its connection
// broke, as opposed to an answer from the provider.
func transportFailure(err error) bool {
	if _, ok := authplugin.AsError(err); ok {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return false
}

// providerError passes typed provider errors through and marks anything else (an untyped
// error, a malformed answer) as a plugin failure.
func providerError(name string, err error) error {
	var verr *authplugin.ValidationError
	if _, ok := authplugin.AsError(err); ok || errors.As(err, &verr) || errors.Is(err, authplugin.ErrNotInteractive) {
		return err
	}
	return fmt.Errorf("%w: %s: %s", ErrPluginFailed, name, status.Convert(err).Message())
}

// call runs fn against the provider with a deadline. A call that fails because the process died
// is retried once on a fresh process; a call that outlives its deadline kills the process.
func (h *Host) call(ctx context.Context, name string, fn func(ctx context.Context, p *authplugin.Client) error) error {
	for attempt := 0; ; attempt++ {
		m, p, err := h.client(name)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
		deadline, _ := cctx.Deadline()
		err = fn(cctx, p)
		// The plugin side may reset the stream a moment before the local timer fires (its
		// copy of the deadline travelled with the call), so a failure at the deadline counts
		// as a timeout too.
		timedOut := err != nil && ctx.Err() == nil &&
			(cctx.Err() == context.DeadlineExceeded || status.Code(err) == codes.DeadlineExceeded || time.Until(deadline) < 100*time.Millisecond)
		cancel()
		switch {
		case err == nil:
			return nil
		case timedOut:
			h.kill(m, p, "call exceeded its deadline")
			return fmt.Errorf("%w: %s did not answer within %s", ErrPluginFailed, name, h.opts.CallTimeout)
		case ctx.Err() != nil:
			return ctx.Err()
		case transportFailure(err):
			// The process died or its connection broke: start a new one and try once more.
			h.kill(m, p, "transport failure: "+status.Convert(err).Message())
			if attempt == 0 {
				continue
			}
			return fmt.Errorf("%w: %s: %s", ErrPluginFailed, name, status.Convert(err).Message())
		default:
			return providerError(name, err)
		}
	}
}

// Describe returns a provider's description.
func (h *Host) Describe(ctx context.Context, name string) (Info, error) {
	var d authplugin.Description
	err := h.call(ctx, name, func(ctx context.Context, p *authplugin.Client) error {
		var err error
		d, err = p.Describe(ctx)
		return err
	})
	if err != nil {
		return Info{}, err
	}
	path, _ := h.path(name)
	sum, _ := h.sum(path)
	return Info{Description: d, Path: path, SHA256: sum}, nil
}

// Providers describes every installed provider, asking them all at once. A provider that
// cannot be used is listed with its name and Err, and logged.
func (h *Host) Providers(ctx context.Context) ([]Info, error) {
	names, err := h.Discover()
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			info, err := h.Describe(ctx, n)
			if err != nil {
				h.log.Error("auth provider unavailable", "provider", n, "err", err)
				info.Name, info.Err = n, err
				info.Path, _ = h.path(n)
				info.SHA256, _ = h.sum(info.Path)
			}
			out[i] = info
		})
	}
	wg.Wait()
	return out, nil
}

// Validate asks the provider to validate an account's config. It returns a
// *authplugin.ValidationError naming the bad fields.
func (h *Host) Validate(ctx context.Context, name string, acct authplugin.Account) error {
	return h.call(ctx, name, func(ctx context.Context, p *authplugin.Client) error {
		return p.ValidateConfig(ctx, acct)
	})
}

// BeginAuthorization starts a provider's interactive sign-in for an account.
func (h *Host) BeginAuthorization(ctx context.Context, name string, acct authplugin.Account) (authplugin.Authorization, error) {
	var a authplugin.Authorization
	err := h.call(ctx, name, func(ctx context.Context, p *authplugin.Client) error {
		state, err := h.state(ctx, acct.MailboxID)
		if err != nil {
			return err
		}
		a, err = p.BeginAuthorization(ctx, authplugin.Request{Account: acct, State: state})
		return err
	})
	return a, err
}

func (h *Host) state(ctx context.Context, mailboxID string) ([]byte, error) {
	if h.opts.State == nil || mailboxID == "" {
		return nil, nil
	}
	return h.opts.State.ProviderState(ctx, mailboxID)
}

// Close stops every plugin process.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.plugins {
		h.kill(m, nil, "server stopping")
	}
}

// Starts reports how many times a provider's process was started (for status and tests).
func (h *Host) Starts(name string) int {
	h.mu.Lock()
	m, ok := h.plugins[name]
	h.mu.Unlock()
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.starts
}

// Pid returns the process id of a provider's running process, or 0.
func (h *Host) Pid(name string) int {
	h.mu.Lock()
	m, ok := h.plugins[name]
	h.mu.Unlock()
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil || m.client.Exited() {
		return 0
	}
	return m.client.ReattachConfig().Pid
}

// PollAuthorization asks a provider once whether an interactive sign-in completed. A pending
// sign-in is an *authplugin.Error with ReasonAuthorizationPending.
func (h *Host) PollAuthorization(ctx context.Context, name string, acct authplugin.Account, handle []byte) (authplugin.PollResult, error) {
	var res authplugin.PollResult
	err := h.call(ctx, name, func(ctx context.Context, p *authplugin.Client) error {
		state, err := h.state(ctx, acct.MailboxID)
		if err != nil {
			return err
		}
		res, err = p.PollAuthorization(ctx, authplugin.Request{Account: acct, State: state}, handle)
		return err
	})
	return res, err
}
