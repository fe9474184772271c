package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/testutil"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// A provider the server cannot use is shown as broken, with the server's reason, beside the
// working ones.
func TestProvidersShowsABrokenProvider(t *testing.T) {
	var out bytes.Buffer
	a := &app{stdout: &out}
	err := a.printProviders(&mailintakev1.ListAuthProvidersResponse{Providers: []*mailintakev1.AuthProvider{
		{Name: "basic", Version: "1", DisplayName: "Username and password", Fields: []*mailintakev1.ConfigField{{Name: "password", Secret: true}}},
		{Name: "nodetoken", Error: "auth provider binary does not match its SHA-256 pin: … has SHA-256 aa but is pinned to bb"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "nodetoken — BROKEN\n  auth provider binary does not match its SHA-256 pin") || !strings.Contains(got, "password") {
		t.Errorf("output:\n%s", got)
	}
}

// provider check starts a provider as the server does: a built-in one passes (exit 0), one
// that writes no handshake line is reported (exit 1) with the reason.
func TestProviderCheck(t *testing.T) {
	dir := testutil.PluginDir(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"provider", "check", filepath.Join(dir, "mailintake-auth-basic")}, strings.NewReader(""), &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "basic") || !strings.Contains(out.String(), "no problems found") {
		t.Errorf("check of basic: exit %d\n%s%s", code, out.String(), errb.String())
	}
	bad := filepath.Join(t.TempDir(), "mailintake-auth-silent")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'hello'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	code = run(context.Background(), []string{"provider", "check", bad}, strings.NewReader(""), &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "REFUSED") || !strings.Contains(errb.String(), "problem(s) found") {
		t.Errorf("check of a provider without a handshake: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
