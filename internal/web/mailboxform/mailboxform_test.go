package mailboxform

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

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
	if f.Provider.GetName() != "basic" || f.Values[Port] != "" || f.Values[Protocol] != "imap" || f.Values[Security] != "tls" || f.Values["mechanism"] != "PLAIN" {
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
		{Field: "mailbox.tenant", Description: "t"}, {Field: "mailbox.insecure_skip_verify", Description: "x"}, {Field: "mailbox.host", Description: "second"},
		{Field: "mailbox.protocol", Description: "pr"}, {Field: "mailbox.poll_interval", Description: "pi"}, {Field: "mailbox.smtp_host", Description: "sh"},
		{Field: "mailbox.smtp_port", Description: "sp"}, {Field: "mailbox.smtp_security", Description: "ss"}, {Field: "mailbox.smtp_from", Description: "sf"},
		{Field: "mailbox.save_sent_copy", Description: "sc"}, {Field: "mailbox.sent_folder", Description: "sd"}, {Field: "mailbox.sending_enabled", Description: "se"},
		{Field: "mailbox.smtp_max_per_minute", Description: "mp"},
	})
	want := map[string]string{Host: "h", Port: "p", "client_id": "c", "client_secret": "s", AfterAckFolder: "f", MaxMessageBytes: "m", "auth_config.host": "ph", Tenant: "t",
		Protocol: "pr", PollInterval: "pi", SMTPHost: "sh", SMTPPort: "sp", SMTPSecurity: "ss", SMTPFrom: "sf", SaveSentCopy: "sc", SentFolder: "sd",
		SendingEnabled: "se", SMTPMaxPerMinute: "mp"}
	for k, v := range want {
		if f.Errors[k] != v {
			t.Errorf("%s: %q, want %q", k, f.Errors[k], v)
		}
	}
	if len(f.Problems) != 1 || f.Problems[0] != "mailbox.insecure_skip_verify: x" {
		t.Errorf("problems %v", f.Problems)
	}
	if list := f.ErrorList(); len(list) != len(want) || list[0].Name != Tenant {
		t.Errorf("summary %+v", list)
	}
	e := Edit(&mailintakev1.Mailbox{Id: "x", AuthProvider: "basic"}, providers)
	if e.InputFor("mailbox.tenant") != "" || e.InputFor("mailbox.protocol") != "" {
		t.Error("the edit form has no tenant or protocol input")
	}
}

// A POP3 mailbox and its outgoing mail server read from the form: the poll interval as a Go
// duration or plain seconds, POP3's usual port left to the API, and a bad interval an error
// on its input; an edit shows them back and keeps the protocol whatever is posted.
func TestPOP3AndSendingRead(t *testing.T) {
	in := url.Values{Protocol: {"pop3"}, Host: {"pop.example.com"}, Port: {""}, Security: {"tls"}, PollInterval: {"300"}, Username: {"u"},
		AuthProvider: {"basic"}, AfterAck: {"delete"}, SendingEnabled: {"true"}, SMTPHost: {"smtp.example.com"}, SMTPPort: {"587"},
		SMTPSecurity: {"starttls"}, SMTPFrom: {"Help <help@example.com>"}, SMTPMaxPerMinute: {"12"}, SentFolder: {"Sent"}}
	f := New(providers)
	mb := f.Read(in).Mailbox
	if f.Invalid() {
		t.Fatalf("errors %v %v", f.Errors, f.Problems)
	}
	if mb.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 || mb.GetPort() != 0 || mb.GetPollInterval().AsDuration() != 5*time.Minute ||
		!mb.GetSendingEnabled() || mb.GetSmtpHost() != "smtp.example.com" || mb.GetSmtpPort() != 587 ||
		mb.GetSmtpSecurity() != mailintakev1.Security_SECURITY_STARTTLS || mb.GetSmtpFrom() != "Help <help@example.com>" ||
		mb.GetSmtpMaxPerMinute() != 12 || mb.GetSaveSentCopy() || mb.GetSentFolder() != "Sent" {
		t.Errorf("mailbox %v", mb)
	}
	for in, want := range map[string]time.Duration{"60s": time.Minute, "5m": 5 * time.Minute, "90": 90 * time.Second, "1h30m": 90 * time.Minute} {
		if d, err := ParseDuration(in); err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, d, err)
		}
	}
	for _, bad := range []string{"soon", "-5s", "1 minute", "0s"} {
		f := New(providers)
		f.Read(url.Values{Protocol: {"pop3"}, PollInterval: {bad}, AuthProvider: {"basic"}})
		if !strings.Contains(f.Errors[PollInterval], "is not a duration") {
			t.Errorf("poll interval %q: errors %v", bad, f.Errors)
		}
	}
	// IMAP: the interval is not sent (the API refuses it for IMAP), its port is 993.
	f = New(providers)
	mb = f.Read(url.Values{Protocol: {"imap"}, Security: {"tls"}, PollInterval: {"60s"}, AuthProvider: {"basic"}}).Mailbox
	if mb.GetPollInterval() != nil || mb.GetPort() != 993 || mb.GetProtocol() != mailintakev1.Protocol_PROTOCOL_IMAP {
		t.Errorf("IMAP mailbox %v", mb)
	}

	mb.Id, mb.Protocol, mb.PollInterval = "m1", mailintakev1.Protocol_PROTOCOL_POP3, durationpb.New(2*time.Minute)
	mb.SendingEnabled, mb.SmtpHost, mb.SmtpPort, mb.SmtpSecurity, mb.SaveSentCopy = true, "smtp.example.com", 465, mailintakev1.Security_SECURITY_TLS, true
	mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}
	e := Edit(mb, providers)
	if e.Values[Protocol] != "pop3" || e.Values[PollInterval] != "2m" || e.Values[SendingEnabled] != "true" || e.Values[SMTPPort] != "465" ||
		e.Values[SMTPSecurity] != "tls" || e.Values[SaveSentCopy] != "true" {
		t.Errorf("edit values %v", e.Values)
	}
	var opts []string
	for _, o := range e.Field(AfterAck).Options {
		opts = append(opts, o.Value)
	}
	if !slices.Equal(opts, []string{"delete", "keep"}) {
		t.Errorf("a POP3 mailbox's after_ack offers %v", opts)
	}
	got := e.Read(url.Values{Protocol: {"imap"}, Host: {"h"}, Security: {"tls"}, AuthProvider: {"basic"}, AfterAck: {"keep"}}).Mailbox
	if got.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 || got.GetSendingEnabled() || got.GetSaveSentCopy() || got.GetPollInterval().AsDuration() != 2*time.Minute {
		t.Errorf("edited %v", got)
	}
	for _, p := range []string{"poll_interval", "sending_enabled", "smtp_host", "smtp_port", "smtp_security", "smtp_from", "save_sent_copy", "sent_folder"} {
		if !slices.Contains(UpdateMask(false), p) {
			t.Errorf("the update mask lacks %s", p)
		}
	}
	if slices.Contains(UpdateMask(true), "protocol") {
		t.Error("the update mask changes the protocol")
	}
}
