package authplugintest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build builds the deliberately broken providers of testdata once: badprovider (no SDK, one
// mistake per executable name) and sdkchatty (the SDK, printing to stdout).
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "authplugintest-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+string(os.PathSeparator), "./testdata/badprovider", "./testdata/sdkchatty")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the test providers: %v", buildErr)
	}
	return buildDir
}

// provider installs a test provider as mailintake-auth-<name> in a fresh directory.
func provider(t *testing.T, program, name string) string {
	t.Helper()
	built := filepath.Join(build(t), program)
	path := filepath.Join(t.TempDir(), "mailintake-auth-"+name)
	// A hard link, not a copy: parallel tests start providers, and a child forked while this
	// process held a copy open for writing keeps that descriptor until it execs, so starting
	// the copy meanwhile fails with ETXTBSY ("text file busy"; golang/go#22315).
	if err := os.Link(built, path); err == nil {
		return path
	}
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// script installs a shell script as mailintake-auth-<name>.
func script(t *testing.T, name, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell scripts")
	}
	path := filepath.Join(t.TempDir(), "mailintake-auth-"+name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// want is a finding a test expects.
type want struct {
	check   string
	text    string // in the problem
	refused bool
}

func expect(t *testing.T, r *Report, wants ...want) {
	t.Helper()
	for _, w := range wants {
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return f.Check == w.check && strings.Contains(f.Problem, w.text) && f.Refused == w.refused
		}) {
			t.Errorf("no %s finding with %q (refused %v) in:\n%s", w.check, w.text, w.refused, r)
		}
	}
	if len(r.Findings) != len(wants) {
		t.Errorf("%d findings, want %d:\n%s", len(r.Findings), len(wants), r)
	}
}

// A provider written without the SDK that gets everything right passes every check, and so
// does the example provider built with the SDK.
func TestConformingProviders(t *testing.T) {
	t.Parallel()
	r := Check(t, provider(t, "badprovider", "good"))
	if !r.OK() || r.Name != "good" || r.Protocol != 1 || len(r.Notes) != 0 {
		t.Errorf("report:\n%s", r)
	}
	for _, c := range []string{CheckHandshake, CheckCertificate, CheckClientAuth, CheckHealth, CheckServices, CheckDescribe,
		CheckValidate, CheckErrors, CheckStdout, CheckSpeed, CheckShutdown, CheckServerStart} {
		if !slices.Contains(r.Passed(), c) {
			t.Errorf("check %q did not run: %v", c, r.Checked)
		}
	}

	example := filepath.Join("..", "..", "examples", "statictoken")
	if _, err := os.Stat(filepath.Join(example, "go.mod")); err != nil {
		t.Skip("the example provider is not beside the SDK (not in the repository)")
	}
	bin := filepath.Join(t.TempDir(), "mailintake-auth-statictoken")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = example
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v: %s", err, out)
	}
	if r := Check(t, bin); !r.OK() {
		t.Errorf("statictoken:\n%s", r)
	}
}

// Each deliberately broken provider gets exactly the finding its mistake deserves.
func TestBrokenProviders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		program, name string
		wants         []want
	}{
		{"badprovider", "future", []want{{CheckHandshake, "speaks auth plugin protocol version 99, but this server speaks version 1 only", true}}},
		{"badprovider", "garbage", []want{{CheckHandshake, `the first line on stdout is "badprovider starting up", not a handshake line`, true}}},
		{"badprovider", "nocert", []want{{CheckCertificate, "carries no certificate", true}}},
		{"badprovider", "ipcert", []want{{CheckCertificate, "valid for IP address 127.0.0.1, not for the DNS name localhost", true}}},
		{"badprovider", "cncert", []want{{CheckCertificate, `TLS clients ignore its common name "localhost"`, true}}},
		{"badprovider", "nohealth", []want{{CheckHealth, "serves no grpc.health.v1.Health service", true}}},
		{"badprovider", "notserving", []want{{CheckHealth, `reports NOT_SERVING for the service "plugin"`, true}}},
		{"badprovider", "nocontroller", []want{{CheckServices, "no plugin.GRPCController/Shutdown: the server stops a provider by calling it, so every stop", false}}},
		{"badprovider", "nostdio", []want{{CheckServices, "no plugin.GRPCStdio", false}}},
		{"badprovider", "untyped", []want{{CheckErrors, `failed (FailedPrecondition: "no token") without a typed detail`, false}}},
		{"badprovider", "mismatch", []want{{CheckErrors, "the code of the google.rpc.Status in its grpc-status-details-bin trailer differs from the call's grpc-status", false}}},
		{"badprovider", "chatty", []want{{CheckStdout, `wrote "ready to serve\n" to stdout after its handshake line`, false}}},
		{"sdkchatty", "sdkchatty", []want{{CheckStdout, `wrote "describing myself\n" to stdout`, false}}},
		{"badprovider", "slow", []want{{CheckSpeed, "Describe took 3.", false}}},
		{"badprovider", "anyclient", []want{{CheckClientAuth, "answers a client whose certificate is not the one in PLUGIN_CLIENT_CERT", false}}},
		{"badprovider", "misnamed", []want{{CheckDescribe, `names the provider "othername", but the executable is mailintake-auth-misnamed`, false}}},
		{"badprovider", "badfields", []want{
			{CheckDescribe, `SASL mechanism "CRAM-MD5" is not one the server speaks`, false},
			{CheckDescribe, `field "Client ID": a field name is a key`, false},
			{CheckDescribe, `field "token" is described twice`, false},
			{CheckDescribe, `field "region" is an enum without options`, false},
			{CheckDescribe, `field "flavour": the default "c" is not one of its options`, false},
			{CheckDescribe, `field "colour" has options but is not an enum`, false},
			{CheckDescribe, `field "api_key" is secret but has a default value`, false},
			{CheckDescribe, `field "retries" has type 42`, false},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Run(context.Background(), provider(t, tc.program, tc.name), Options{})
			expect(t, r, tc.wants...)
			if r.OK() || r.Refused() != tc.wants[0].refused || !strings.Contains(r.String(), tc.wants[0].text) {
				t.Errorf("OK %v, Refused %v; report:\n%s", r.OK(), r.Refused(), r)
			}
		})
	}
}

// Scripts: the smallest mistakes, without a Go program.
func TestBrokenScripts(t *testing.T) {
	t.Parallel()
	t.Run("version 99", func(t *testing.T) {
		t.Parallel()
		// A handshake line announcing protocol version 99, at an address nothing listens on.
		r := Run(context.Background(), script(t, "future", "echo '1|99|tcp|127.0.0.1:1|grpc'\nsleep 5\n"), Options{})
		expect(t, r,
			want{CheckHandshake, "speaks auth plugin protocol version 99, but this server speaks version 1 only: build the provider with an SDK release that speaks version 1", true},
			want{CheckCertificate, "carries no certificate", true},
			want{CheckHandshake, "cannot connect to tcp 127.0.0.1:1", true})
		if r.Protocol != 99 {
			t.Errorf("Protocol = %d", r.Protocol)
		}
	})
	t.Run("exits", func(t *testing.T) {
		t.Parallel()
		r := Run(context.Background(), script(t, "exits", "echo 'cannot find node' >&2\nexit 3\n"), Options{})
		expect(t, r, want{CheckHandshake, "exited (exit status 3) without printing a handshake line on stdout (stderr: cannot find node)", true})
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := Run(context.Background(), script(t, "silent", "sleep 10\n"), Options{StartTimeout: time.Second})
		expect(t, r, want{CheckHandshake, "no handshake line on stdout within 1s", true})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %s", d)
		}
	})
	t.Run("core 2", func(t *testing.T) {
		t.Parallel()
		r := Run(context.Background(), script(t, "core", "echo '2|1|tcp|127.0.0.1:1|grpc'\n"), Options{})
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return f.Check == CheckHandshake && f.Refused && strings.Contains(f.Problem, `first field (go-plugin's core protocol version) is "2": it must be 1`)
		}) {
			t.Errorf("report:\n%s", r)
		}
	})
	t.Run("net/rpc", func(t *testing.T) {
		t.Parallel()
		r := Run(context.Background(), script(t, "netrpc", "echo '1|1|tcp|127.0.0.1:1|netrpc'\n"), Options{})
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return f.Check == CheckHandshake && f.Refused && strings.Contains(f.Problem, `the protocol (fifth field) is "netrpc": the server speaks only grpc`)
		}) {
			t.Errorf("report:\n%s", r)
		}
	})
	t.Run("padded certificate", func(t *testing.T) {
		t.Parallel()
		r := Run(context.Background(), script(t, "padded", "echo '1|1|tcp|127.0.0.1:1|grpc|"+strings.Repeat("QUJD", 20)+"QQ=='\n"), Options{})
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return f.Check == CheckCertificate && f.Refused && strings.Contains(f.Problem, "padded base64")
		}) {
			t.Errorf("report:\n%s", r)
		}
	})
}

func TestExecutableName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "mailintake-auth-x")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	expect(t, Run(context.Background(), notExec, Options{}), want{CheckExecutable, "is not executable", true})
	misnamed := filepath.Join(dir, "myprovider")
	os.WriteFile(misnamed, []byte("#!/bin/sh\nexit 1\n"), 0o755)
	r := Run(context.Background(), misnamed, Options{})
	if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
		return f.Check == CheckExecutable && strings.Contains(f.Problem, `the file is named "myprovider": the server finds providers named mailintake-auth-<name>`)
	}) {
		t.Errorf("report:\n%s", r)
	}
}

// Check reports each finding through t.Errorf.
func TestCheckReportsThroughT(t *testing.T) {
	t.Parallel()
	var rec recorder
	Check(&rec, provider(t, "badprovider", "untyped"))
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "mailintake-auth-untyped: typed errors: IssueCredential") {
		t.Errorf("errors = %q", rec.errors)
	}
}

type recorder struct{ errors []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
