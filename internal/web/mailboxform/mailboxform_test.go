package mailboxform

import (
	"net/url"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

var providers = []*mailintakev1.AuthProvider{
	{Name: "basic", DisplayName: "Username and password", Fields: []*mailintakev1.ConfigField{
		{Name: "password", Label: "Password", Required: true, Secret: true},
		{Name: "mechanism", Label: "SASL mechanism", Type: mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_ENUM, Options: []string{"PLAIN", "LOGIN"}, DefaultValue: "PLAIN"},
	}},
	{Name: "o365", DisplayName: "Microsoft 365", Interactive: true, Fields: []*mailintakev1.ConfigField{
		{Name: "client_id", Label: "Application (client) ID", Required: true},
		{Name: "tenant_id", Label: "Directory (tenant) ID", Required: true},
		{Name: "flow", Label: "Sign-in flow", Type: mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_ENUM, Options: []string{"ropc", "device_code"}, DefaultValue: "ropc"},
		{Name: "client_secret", Label: "Client secret", Secret: true},
		{Name: "authority", Label: "Authority", Type: mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_URL, DefaultValue: "https://login.microsoftonline.com"},
		{Name: "host", Label: "A field named like the form's own"},
	}},
	{Name: "broken", Error: "pin mismatch"},
}

func TestNewAndProviderFields(t *testing.T) {
	f := New(providers)
	if f.Provider.GetName() != "basic" || f.Values[Port] != "993" || f.Values[Security] != "tls" || f.Values["mechanism"] != "PLAIN" {
		t.Errorf("defaults: %v %v", f.Provider.GetName(), f.Values)
	}
	opts := f.Field(AuthProvider).Options
	if len(opts) != 2 || !opts[0].Selected || opts[1].Value != "o365" {
		t.Errorf("provider options (the broken one left out): %+v", opts)
	}
	f.WithProvider("o365")
	var names []string
	for _, pf := range f.ProviderFields() {
		names = append(names, pf.Name+":"+pf.Kind)
	}
	want := []string{"client_id:text", "tenant_id:text", "flow:select", "client_secret:password", "authority:url", "auth_config.host:text"}
	if !slices.Equal(names, want) {
		t.Errorf("o365 inputs %v, want %v", names, want)
	}
	if a := f.ProviderFields()[4]; a.Placeholder != "https://login.microsoftonline.com" || a.Value != "" {
		t.Errorf("the authority's default: %+v", a)
	}
}

func TestReadAndSecrets(t *testing.T) {
	f := New(providers)
	in := url.Values{DisplayName: {" Support "}, Tenant: {"acme"}, Host: {"imap.example.com"}, Port: {""}, Security: {"starttls"},
		Username: {"u"}, AuthProvider: {"o365"}, "client_id": {"cid"}, "tenant_id": {"tid"}, "flow": {"device_code"}, "client_secret": {"s3cret"},
		"auth_config.host": {"h"}, StartFrom: {"unseen"}, AfterAck: {"move"}, AfterAckFolder: {"Done"}, MaxMessageBytes: {"1000"}, Enabled: {"true"}}
	sub := f.Read(in)
	mb := sub.Mailbox
	if mb.GetDisplayName() != "Support" || mb.GetTenant() != "acme" || mb.GetPort() != 143 || mb.GetSecurity() != mailintakev1.Security_SECURITY_STARTTLS ||
		mb.GetStartFrom() != mailintakev1.StartFrom_START_FROM_UNSEEN || mb.GetAfterAck().GetFolder() != "Done" || mb.GetLimits().GetMaxMessageBytes() != 1000 ||
		!mb.GetEnabled() || mb.GetAuthConfig()["client_id"] != "cid" || mb.GetAuthConfig()["host"] != "h" || mb.GetAuthConfig()["flow"] != "device_code" {
		t.Errorf("mailbox %v", mb)
	}
	if _, ok := mb.GetAuthConfig()["client_secret"]; ok || sub.Secrets["client_secret"] != "s3cret" || len(mb.GetAuthSecrets()) != 0 {
		t.Errorf("the secret went to the wrong place: %v %v", mb.GetAuthConfig(), sub.Secrets)
	}
	for k, v := range f.Values {
		if v == "s3cret" {
			t.Errorf("the secret is among the form's values (%s)", k)
		}
	}
	if f.Invalid() {
		t.Errorf("errors: %v", f.Errors)
	}
	f = New(providers)
	f.Read(url.Values{Port: {"x"}, Security: {"ssl3"}, MaxMessageBytes: {"-1"}, AuthProvider: {"basic"}})
	for _, in := range []string{Port, Security, MaxMessageBytes} {
		if f.Errors[in] == "" {
			t.Errorf("no error for %s", in)
		}
	}
}

func TestEditNeverShowsSecrets(t *testing.T) {
	mb := &mailintakev1.Mailbox{Id: "m1", Tenant: "acme", Host: "h", Port: 993, AuthProvider: "o365",
		AuthConfig: map[string]string{"client_id": "cid"}, AuthSecretsSet: []string{"client_secret"}, Folder: "INBOX"}
	f := Edit(mb, providers)
	for _, pf := range f.ProviderFields() {
		if pf.Name == "client_secret" && (pf.Value != "" || pf.Held != "stored" || pf.Required) {
			t.Errorf("client_secret input %+v", pf)
		}
		if pf.Name == "client_id" && pf.Value != "cid" {
			t.Errorf("client_id input %+v", pf)
		}
	}
	if f.Values[Folder] != "" || f.Field(Tenant).Required {
		t.Errorf("edit values %v", f.Values)
	}
	if mask := UpdateMask(false); slices.Contains(mask, "auth_secrets") || !slices.Contains(mask, "auth_config") {
		t.Errorf("mask %v", mask)
	}
}

func TestViolationsLandOnInputs(t *testing.T) {
	f := New(providers)
	f.WithProvider("o365")
	f.AddViolations([]*errdetails.BadRequest_FieldViolation{
		{Field: "mailbox.host", Description: "h"}, {Field: "mailbox.port", Description: "p"}, {Field: "mailbox.auth_config.client_id", Description: "c"},
		{Field: "mailbox.auth_secrets.client_secret", Description: "s"}, {Field: "mailbox.after_ack.folder", Description: "f"},
		{Field: "mailbox.limits.max_message_bytes", Description: "m"}, {Field: "mailbox.auth_config.host", Description: "ph"},
		{Field: "mailbox.tenant", Description: "t"}, {Field: "mailbox.protocol", Description: "x"}, {Field: "mailbox.host", Description: "second"},
	})
	want := map[string]string{Host: "h", Port: "p", "client_id": "c", "client_secret": "s", AfterAckFolder: "f", MaxMessageBytes: "m", "auth_config.host": "ph", Tenant: "t"}
	for k, v := range want {
		if f.Errors[k] != v {
			t.Errorf("%s: %q, want %q", k, f.Errors[k], v)
		}
	}
	if len(f.Problems) != 1 || f.Problems[0] != "mailbox.protocol: x" {
		t.Errorf("problems %v", f.Problems)
	}
	if list := f.ErrorList(); len(list) != len(want) || list[0].Name != Tenant {
		t.Errorf("summary %+v", list)
	}
	e := Edit(&mailintakev1.Mailbox{Id: "x", AuthProvider: "basic"}, providers)
	if e.InputFor("mailbox.tenant") != "" {
		t.Error("the edit form has no tenant input")
	}
}
