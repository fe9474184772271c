package main

import (
	"bytes"
	"strings"
	"testing"

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
