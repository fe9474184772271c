package pluginhost

import (
	"context"
	"debug/buildinfo"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/authplugin/authplugintest"
)

// olderRelease is the release before the SDK became a module of its own: its example provider
// required the whole server module.
const olderRelease = "a222271"

// A provider built with an older SDK, speaking the same protocol version, keeps working: the
// example provider as it was in the previous release, built from that release's tree.
func TestProviderFromAnOlderSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a provider from an older release")
	}
	root := testutil.ModuleRoot()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", olderRelease+"^{commit}").Run(); err != nil {
		t.Skipf("the release %s is not in this clone (a shallow one?)", olderRelease)
	}
	src := t.TempDir()
	extract := exec.Command("sh", "-c", `git -C "$0" archive "$1" go.mod go.sum plugins proto | tar -x -C "$2"`, root, olderRelease, src)
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v: %s", olderRelease, err, out)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mailintake-auth-statictoken")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(src, "plugins", "examples", "statictoken")
	build.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the %s example provider: %v: %s", olderRelease, err, out)
	}
	// It really is the old SDK: the whole server module, no SDK module.
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var deps []string
	for _, d := range info.Deps {
		deps = append(deps, d.Path)
	}
	if !slices.Contains(deps, "github.com/mailintake/mailintake") || slices.Contains(deps, "github.com/mailintake/mailintake/plugins/authplugin") {
		t.Fatalf("the old provider's modules are %v, want the server module and no SDK module", deps)
	}

	h, _, _ := newHost(t, Options{Dir: dir})
	ctx := context.Background()
	info2, err := h.Describe(ctx, "statictoken")
	if err != nil {
		t.Fatalf("the current host refuses a provider built with the SDK of %s: %v", olderRelease, err)
	}
	if info2.Name != "statictoken" || len(info2.Fields) != 3 {
		t.Errorf("described as %+v", info2.Description)
	}
	a := authplugin.Account{MailboxID: "m1", Username: "u@example.com", Secrets: map[string]string{"token": "tok-old"}}
	c, err := h.Credential(ctx, "statictoken", a, false)
	if err != nil || c.Secret != "tok-old" || c.Mechanism != "XOAUTH2" {
		t.Errorf("Credential = %+v, %v", c, err)
	}
	a.Secrets = nil
	if _, err := h.Credential(ctx, "statictoken", a, false); !errors.Is(err, authplugin.ErrConfigInvalid) {
		t.Errorf("a typed error from the old provider = %v, want ErrConfigInvalid", err)
	}
}

// A provider announcing a protocol version the host does not speak is refused with words that
// name both versions and say what to do, not go-plugin's "Incompatible API version".
func TestUnknownProtocolVersionIsRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mailintake-auth-future"), []byte("#!/bin/sh\necho '1|99|tcp|127.0.0.1:1|grpc'\nsleep 10\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "mailintake-auth-core"), []byte("#!/bin/sh\necho '2|1|tcp|127.0.0.1:1|grpc'\nsleep 10\n"), 0o755)
	h, _, _ := newHost(t, Options{Dir: dir})
	start := time.Now()
	_, err := h.Describe(context.Background(), "future")
	if !errors.Is(err, ErrPluginFailed) {
		t.Fatalf("err = %v, want ErrPluginFailed", err)
	}
	for _, want := range []string{
		"the provider speaks auth plugin protocol version 99, but this server speaks version 1 only",
		"build the provider with an SDK release that speaks version 1 (every github.com/mailintake/mailintake/plugins/authplugin v1.x.y release does)",
		"or upgrade mailintake to a release that speaks version 99",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(strings.ToLower(err.Error()), "incompatible api version") {
		t.Errorf("go-plugin's words leaked: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s", d)
	}
	if _, err := h.Describe(context.Background(), "core"); !errors.Is(err, ErrPluginFailed) ||
		!strings.Contains(err.Error(), "starts with go-plugin core protocol version 2, but the server speaks core version 1") {
		t.Errorf("core version 2: %v", err)
	}
}

// The host asks a provider's health service after every start and refuses one that does not
// report SERVING for "plugin", or whose certificate is not for localhost; a provider written
// without the SDK that does everything right works; one without plugin.GRPCController is used
// but every stop waits 2 s.
func TestHealthAndCertificateAreRequired(t *testing.T) {
	dir := testutil.BadProviders(t, "good", "notserving", "nohealth", "ipcert", "cncert", "nocontroller")
	h, _, _ := newHost(t, Options{Dir: dir})
	ctx := context.Background()
	if info, err := h.Describe(ctx, "good"); err != nil || info.Name != "good" {
		t.Errorf("a conforming provider without the SDK: %+v, %v", info, err)
	}
	for name, want := range map[string]string{
		"notserving": `the provider's health service reports NOT_SERVING for the service "plugin": a provider must report SERVING once it serves`,
		"nohealth":   `the provider serves no grpc.health.v1.Health service: it must serve one reporting SERVING for the service "plugin"`,
		"ipcert":     `x509: certificate is not valid for any names, but wanted to match localhost"; with automatic mutual TLS the certificate in the provider's handshake line must carry the DNS name "localhost"`,
		"cncert":     `must carry the DNS name "localhost" as a subject alternative name (the server verifies that name)`,
	} {
		_, err := h.Describe(ctx, name)
		if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant ErrPluginFailed with %q", name, err, want)
		}
		if h.Pid(name) != 0 {
			t.Errorf("%s: a refused provider is running", name)
		}
	}

	if _, err := h.Describe(ctx, "nocontroller"); err != nil {
		t.Fatalf("nocontroller: %v", err)
	}
	m := h.plugins["nocontroller"]
	start := time.Now()
	h.kill(m, nil, "test")
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("stopping a provider without plugin.GRPCController took %s; the README says every stop waits 2 s", d)
	}
}

// The built-in providers and the example pass the conformance check a provider author runs.
func TestBuiltInProvidersConform(t *testing.T) {
	dir := testutil.PluginDir(t)
	for _, name := range []string{"basic", "o365", "statictoken", "fake"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := authplugintest.Check(t, filepath.Join(dir, "mailintake-auth-"+name))
			if r.Name != name || len(r.Passed()) != len(r.Checked) {
				t.Errorf("report:\n%s", r)
			}
		})
	}
}
