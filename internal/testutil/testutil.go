// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"encoding/base64"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// ModuleRoot returns the repository root.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// PluginDir builds the provider plugins (basic, o365, google, the test fake and the example third-party
// statictoken) once per test binary and
// returns the directory holding them. Tests that use it run real plugin subprocesses.
func PluginDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mailintake-plugins-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+string(os.PathSeparator),
			"./plugins/basic/cmd/mailintake-auth-basic",
			"./plugins/o365/cmd/mailintake-auth-o365",
			"./plugins/google/cmd/mailintake-auth-google",
			"./internal/fakes/fakeprovider/cmd/mailintake-auth-fake")
		cmd.Dir = ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: strings.TrimSpace(string(out))}
			return
		}
		// The example third-party provider is its own module (it requires only the SDK's): it
		// builds from its directory.
		cmd = exec.Command("go", "build", "-o", filepath.Join(buildDir, "mailintake-auth-statictoken"), ".")
		cmd.Dir = filepath.Join(ModuleRoot(), "plugins", "examples", "statictoken")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: strings.TrimSpace(string(out))}
		}
	})
	if buildErr != nil {
		t.Fatalf("building plugins: %v", buildErr)
	}
	return buildDir
}

var (
	badOnce sync.Once
	badPath string
	badErr  error
)

// BadProviders installs the SDK's deliberately broken test provider (a provider written without
// the SDK, as one in another language is: plugins/authplugin/authplugintest/testdata/badprovider)
// under each of the given modes' names, mailintake-auth-<mode>, in a fresh directory. Its name
// picks its mistake: "good" has none, "notserving" reports NOT_SERVING, "ipcert" serves a
// certificate for 127.0.0.1 only, "future" speaks protocol version 99, …
func BadProviders(t testing.TB, modes ...string) string {
	t.Helper()
	badOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailintake-badprovider-")
		if err != nil {
			badErr = err
			return
		}
		badPath = filepath.Join(dir, "badprovider")
		// The SDK is its own module: the program builds from its directory.
		cmd := exec.Command("go", "build", "-o", badPath, "./authplugintest/testdata/badprovider")
		cmd.Dir = filepath.Join(ModuleRoot(), "plugins", "authplugin")
		if out, err := cmd.CombinedOutput(); err != nil {
			badErr = &buildError{err: err, out: strings.TrimSpace(string(out))}
		}
	})
	if badErr != nil {
		t.Fatalf("building the broken test provider: %v", badErr)
	}
	data, err := os.ReadFile(badPath)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, m := range modes {
		if err := os.WriteFile(filepath.Join(dst, "mailintake-auth-"+m), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// CopyPlugins copies the built plugins into a fresh directory the test may change.
func CopyPlugins(t testing.TB, names ...string) string {
	t.Helper()
	src := PluginDir(t)
	dst := t.TempDir()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, "mailintake-auth-"+n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "mailintake-auth-"+n), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a server a test
// starts (the private Dovecot, Courier, mox and PostgreSQL).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RandomBytes returns n pseudo-random bytes, the same for the same seed.
func RandomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

// Base64Lines returns data in base64 as mailers send it: lines of 76 characters, each ended
// by CRLF.
func Base64Lines(data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	b.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}
