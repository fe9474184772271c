// Package mailboxform is the admin web page's mailbox form: the inputs it shows, read from the
// API's Mailbox fields and the auth provider's own field descriptions (ListAuthProviders), how a
// submitted form becomes a Mailbox and its update mask, and how the API's field violations
// (google.rpc.BadRequest, e.g. "mailbox.port", "mailbox.auth_config.client_id") land next to
// the input they concern.
//
// Inputs are named after the API's fields: display_name, tenant, protocol (imap, pop3; fixed
// once saved), host, port, security (tls, starttls, none), poll_interval (POP3 only: a Go
// duration or plain seconds), username, auth_provider, start_from, after_ack, folder, ca_pem,
// max_message_bytes, ticket_pattern, enabled, the outgoing mail server's sending_enabled,
// smtp_host, smtp_port, smtp_security, smtp_from, smtp_max_per_minute, save_sent_copy and
// sent_folder, and each provider field under its own name (password, client_id, tenant_id,
// flow, …). Secret values are never put back into a form.
package mailboxform

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Names of the form's own inputs.
const (
	DisplayName     = "display_name"
	Tenant          = "tenant"
	Host            = "host"
	Port            = "port"
	Security        = "security"
	Username        = "username"
	AuthProvider    = "auth_provider"
	StartFrom       = "start_from"
	AfterAck        = "after_ack"
	AfterAckFolder  = "after_ack_folder"
	Folder          = "folder"
	CAPEM           = "ca_pem"
	MaxMessageBytes = "max_message_bytes"
	TicketPattern   = "ticket_pattern"
	Enabled         = "enabled"
	Protocol        = "protocol"
	PollInterval    = "poll_interval"
	// The outgoing mail server (sending).
	SendingEnabled   = "sending_enabled"
	SMTPHost         = "smtp_host"
	SMTPPort         = "smtp_port"
	SMTPSecurity     = "smtp_security"
	SMTPFrom         = "smtp_from"
	SMTPMaxPerMinute = "smtp_max_per_minute"
	SaveSentCopy     = "save_sent_copy"
	SentFolder       = "sent_folder"
)

// reserved are the form's own input names; a provider field of the same name is named
// "auth_config.NAME" instead so the two cannot collide.
var reserved = map[string]bool{DisplayName: true, Tenant: true, Host: true, Port: true, Security: true, Username: true,
	AuthProvider: true, StartFrom: true, AfterAck: true, AfterAckFolder: true, Folder: true, CAPEM: true,
	MaxMessageBytes: true, TicketPattern: true, Enabled: true, Protocol: true, PollInterval: true, SendingEnabled: true, SMTPHost: true,
	SMTPPort: true, SMTPSecurity: true, SMTPFrom: true, SMTPMaxPerMinute: true, SaveSentCopy: true, SentFolder: true, "action": true, "draft": true}

// InputName is the input name of a provider field.
func InputName(field string) string {
	if reserved[field] {
		return "auth_config." + field
	}
	return field
}

// Option is one choice of a select.
type Option struct {
	Value, Label string
	Selected     bool
}

// Field is one input as the page renders it.
type Field struct {
	Name  string // the input's name, also its id
	Label string
	Help  string
	// Kind is the input's kind: text, number, url, password, textarea, select, checkbox.
	Kind         string
	Value        string // never set for a secret
	Placeholder  string
	Autocomplete string
	Options      []Option
	Required     bool
	// Held says why a secret input may stay empty: a value is stored for the mailbox, or was
	// typed in an earlier submission of this form and is kept on the server meanwhile.
	Held  string
	Error string
	// Autofocus is set on the first input with an error, so the keyboard lands there.
	Autofocus bool
}

var securityOptions = []Option{{"tls", "TLS (usually port 993)", false}, {"starttls", "STARTTLS (usually port 143)", false}, {"none", "None: plaintext (not recommended)", false}}
var startFromOptions = []Option{{"new", "Only mail that arrives from now on", false}, {"unseen", "Unread mail already there, then new mail", false}, {"all", "Every message already there, then new mail", false}}
var protocolOptions = []Option{{"imap", "IMAP", false}, {"pop3", "POP3", false}}
var smtpSecurityOptions = []Option{{"starttls", "STARTTLS (usually port 587)", false}, {"tls", "TLS (usually port 465)", false}, {"none", "None: plaintext (not recommended)", false}}
var afterAckOptions = []Option{{"mark_seen", "Mark it as read", false}, {"move", "Move it to a folder", false}, {"delete", "Delete it", false}, {"keep", "Leave it as it is", false}}

// definitions of the form's own inputs.
var definitions = map[string]Field{
	DisplayName: {Label: "Name", Help: "A name for this mailbox, e.g. Support inbox.", Kind: "text", Autocomplete: "off"},
	Tenant:      {Label: "Tenant", Help: "The customer the mailbox belongs to; only that tenant's tokens see it.", Kind: "text", Required: true, Autocomplete: "off"},
	Protocol: {Label: "Protocol", Help: "IMAP is told of new mail at once and can mark, move or delete it; POP3 sees only the inbox, polled, and keeps or deletes what was taken. Fixed once the mailbox is saved.",
		Kind: "select", Options: protocolOptions},
	Host: {Label: "Incoming mail server", Help: "The IMAP or POP3 server's host name, e.g. outlook.office365.com.", Kind: "text", Required: true, Autocomplete: "off"},
	Port: {Label: "Port", Help: "IMAP: 993 with TLS, 143 with STARTTLS or none. POP3: 995 with TLS, 110 with STARTTLS or none. Empty: the usual port of the protocol and encryption chosen.",
		Kind: "number", Placeholder: "993"},
	PollInterval: {Label: "Check for new mail every", Help: "POP3 only (IMAP is told of new mail at once): e.g. 60s, 5m or 300 (seconds); from 5s to 24h. Empty: 60s.",
		Kind: "text", Placeholder: "60s", Autocomplete: "off"},
	Security: {Label: "Encryption", Kind: "select", Options: securityOptions},
	Username: {Label: "Username", Help: "The account to sign in as (for Microsoft 365 the mailbox's address).", Kind: "text", Required: true, Autocomplete: "off"},
	AuthProvider: {Label: "Sign-in method", Help: "How the server signs in to the mailbox: a password, or OAuth 2.0 with Microsoft 365.",
		Kind: "select"},
	StartFrom:       {Label: "The first sync delivers", Kind: "select", Options: startFromOptions},
	AfterAck:        {Label: "Once the service desk has taken a message", Kind: "select", Options: afterAckOptions},
	AfterAckFolder:  {Label: "Move to folder", Help: "For \"Move it to a folder\": the folder, e.g. Processed/Tickets (created if missing).", Kind: "text", Autocomplete: "off"},
	Folder:          {Label: "Folder to watch", Help: "Empty: INBOX.", Kind: "text", Placeholder: "INBOX", Autocomplete: "off"},
	CAPEM:           {Label: "Trusted CA certificate (PEM)", Help: "Only for a server whose certificate a private CA signed: paste that CA's certificate. Empty: the system's CAs.", Kind: "textarea"},
	MaxMessageBytes: {Label: "Largest message (bytes)", Help: "Larger messages are held in quarantine instead of delivered. Empty: the server's default (50 MiB).", Kind: "number"},
	TicketPattern:   {Label: "Ticket reference pattern", Help: `A regular expression whose first group finds a ticket number in the subject, e.g. \[#(\d+)\]. Empty: none.`, Kind: "text", Autocomplete: "off"},
	Enabled:         {Label: "Fetch mail once saved", Help: "Unticked: the mailbox is saved disabled.", Kind: "checkbox"},
	SendingEnabled:  {Label: "Send mail as this mailbox", Help: "Replies from the service desk go out through this outgoing mail server, signed in with the same sign-in method.", Kind: "checkbox"},
	SMTPHost: {Label: "Outgoing mail server (SMTP)", Help: "The submission server's host name, e.g. smtp.office365.com. Required to send (filled in for Microsoft 365).",
		Kind: "text", Autocomplete: "off"},
	SMTPPort:     {Label: "SMTP port", Help: "587 with STARTTLS, 465 with TLS. Empty: the usual port of the encryption chosen.", Kind: "number"},
	SMTPSecurity: {Label: "SMTP encryption", Kind: "select", Options: smtpSecurityOptions},
	SMTPFrom: {Label: "Send as (From)", Help: "The From address, e.g. Support <support@example.com>. Empty: the username, which must then be an email address.",
		Kind: "text", Autocomplete: "off"},
	SMTPMaxPerMinute: {Label: "Messages a minute at most", Help: "More wait their turn. Empty: 30 (Exchange Online's limit).", Kind: "number"},
	SaveSentCopy: {Label: "Save a copy of sent mail in a folder (IMAP only)",
		Help: "Not for Microsoft 365 or Gmail, whose servers file a copy themselves, nor for POP3.", Kind: "checkbox"},
	SentFolder: {Label: "Sent folder", Help: "Where the copy goes, e.g. Sent. Empty: the folder the server marks as Sent, else Sent.", Kind: "text", Autocomplete: "off"},
}

// Form is the mailbox form: its values (never a secret), its errors, and the providers it
// offers.
type Form struct {
	// ID is the mailbox's id when editing; empty when adding.
	ID     string
	Values map[string]string
	// Errors maps an input name to what is wrong with it.
	Errors map[string]string
	// Problems are violations that belong to no input of the form.
	Problems []string
	// Providers are the installed providers; Provider is the chosen one (nil when none is).
	Providers []*mailintakev1.AuthProvider
	Provider  *mailintakev1.AuthProvider
	// Held maps a secret provider field to why it may stay empty ("stored", "entered").
	Held map[string]string
}

// New returns the form for adding a mailbox, with the usual defaults.
func New(providers []*mailintakev1.AuthProvider) *Form {
	f := &Form{Values: map[string]string{Protocol: "imap", Security: "tls", StartFrom: "new", AfterAck: "mark_seen", Enabled: "true", SMTPSecurity: "starttls"},
		Providers: providers, Errors: map[string]string{}, Held: map[string]string{}}
	for _, p := range providers {
		if p.GetError() == "" && (f.Provider == nil || p.GetName() == "basic") {
			f.Provider = p
		}
	}
	if f.Provider != nil {
		f.Values[AuthProvider] = f.Provider.GetName()
		f.providerDefaults()
	}
	return f
}

// providerDefaults fills the chosen provider's enum and bool defaults.
func (f *Form) providerDefaults() {
	for _, pf := range f.Provider.GetFields() {
		name := InputName(pf.GetName())
		if _, ok := f.Values[name]; !ok && pf.GetDefaultValue() != "" && !pf.GetSecret() && isChoice(pf) {
			f.Values[name] = pf.GetDefaultValue()
		}
	}
}

func isChoice(pf *mailintakev1.ConfigField) bool {
	return pf.GetType() == mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_ENUM || pf.GetType() == mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_BOOL
}

// Edit returns the form for a saved mailbox. Its stored secrets are marked held, never shown.
func Edit(mb *mailintakev1.Mailbox, providers []*mailintakev1.AuthProvider) *Form {
	f := &Form{ID: mb.GetId(), Values: map[string]string{}, Providers: providers, Errors: map[string]string{}, Held: map[string]string{}}
	v := f.Values
	v[DisplayName] = mb.GetDisplayName()
	v[Tenant] = mb.GetTenant()
	v[Protocol] = protocolName(mb.GetProtocol())
	v[Host] = mb.GetHost()
	if d := mb.GetPollInterval(); d != nil {
		v[PollInterval] = FormatDuration(d.AsDuration())
	}
	if mb.GetSendingEnabled() {
		v[SendingEnabled] = "true"
	}
	v[SMTPHost] = mb.GetSmtpHost()
	if mb.GetSmtpPort() != 0 {
		v[SMTPPort] = strconv.FormatUint(uint64(mb.GetSmtpPort()), 10)
	}
	v[SMTPSecurity] = nameOf(securities, mb.GetSmtpSecurity(), "starttls")
	v[SMTPFrom] = mb.GetSmtpFrom()
	if n := mb.GetSmtpMaxPerMinute(); n != 0 {
		v[SMTPMaxPerMinute] = strconv.FormatUint(uint64(n), 10)
	}
	if mb.GetSaveSentCopy() {
		v[SaveSentCopy] = "true"
	}
	v[SentFolder] = mb.GetSentFolder()
	if mb.GetPort() != 0 {
		v[Port] = strconv.FormatUint(uint64(mb.GetPort()), 10)
	}
	v[Security] = securityName(mb.GetSecurity())
	v[Username] = mb.GetUsername()
	v[AuthProvider] = mb.GetAuthProvider()
	v[StartFrom] = startFromName(mb.GetStartFrom())
	v[AfterAck] = afterAckName(mb.GetAfterAck().GetAction())
	v[AfterAckFolder] = mb.GetAfterAck().GetFolder()
	if mb.GetFolder() != "INBOX" {
		v[Folder] = mb.GetFolder()
	}
	v[CAPEM] = mb.GetCaPem()
	if n := mb.GetLimits().GetMaxMessageBytes(); n != 0 {
		v[MaxMessageBytes] = strconv.FormatUint(n, 10)
	}
	v[TicketPattern] = mb.GetTicketPattern()
	if mb.GetEnabled() {
		v[Enabled] = "true"
	}
	f.Provider = find(providers, mb.GetAuthProvider())
	for k, val := range mb.GetAuthConfig() {
		v[InputName(k)] = val
	}
	for _, s := range mb.GetAuthSecretsSet() {
		f.Held[s] = "stored"
	}
	if f.Provider != nil {
		f.providerDefaults()
	}
	return f
}

func find(providers []*mailintakev1.AuthProvider, name string) *mailintakev1.AuthProvider {
	for _, p := range providers {
		if p.GetName() == name && p.GetError() == "" {
			return p
		}
	}
	return nil
}

// WithProvider switches the form to the provider name (the select changed), keeping the
// values typed so far.
func (f *Form) WithProvider(name string) {
	f.Values[AuthProvider] = name
	f.Provider = find(f.Providers, name)
	if f.Provider != nil {
		f.providerDefaults()
	}
}

// Field returns the form's own input name, as rendered.
func (f *Form) Field(name string) Field {
	d := definitions[name]
	d.Name = name
	d.Value = f.Values[name]
	d.Error = f.Errors[name]
	switch name {
	case AuthProvider:
		for _, p := range f.Providers {
			label := p.GetDisplayName()
			if label == "" {
				label = p.GetName()
			}
			if p.GetError() != "" {
				continue
			}
			d.Options = append(d.Options, Option{Value: p.GetName(), Label: label + " (" + p.GetName() + ")"})
		}
		if f.Provider == nil {
			d.Options = append([]Option{{Value: "", Label: "Choose…"}}, d.Options...)
		}
	case Tenant:
		d.Required = f.ID == ""
	case Port:
		if f.Values[Protocol] == "pop3" {
			d.Placeholder = "995"
		}
	case AfterAck:
		if f.ID != "" && f.Values[Protocol] == "pop3" {
			// A saved POP3 mailbox keeps its protocol: only what POP3 can do is offered.
			d.Options = slices.DeleteFunc(slices.Clone(d.Options), func(o Option) bool { return o.Value != "keep" && o.Value != "delete" })
			if v := d.Value; v != "keep" && v != "delete" {
				d.Options = append(d.Options, Option{Value: v, Label: v})
			}
		}
	}
	d.Options = selected(d.Options, d.Value)
	d.Autofocus = d.Error != "" && f.firstError() == name
	return d
}

// Fixed reports whether the protocol can no longer change (the mailbox is saved).
func (f *Form) Fixed() bool { return f.ID != "" }

// POP3 reports whether the form's protocol is POP3.
func (f *Form) POP3() bool { return f.Values[Protocol] == "pop3" }

// ProtocolLabel is the form's protocol as shown: IMAP or POP3.
func (f *Form) ProtocolLabel() string { return strings.ToUpper(f.Values[Protocol]) }

// firstError is the input name of the first error in the form's order, or "".
func (f *Form) firstError() string {
	if l := f.ErrorList(); len(l) > 0 {
		return l[0].Name
	}
	return ""
}

func selected(opts []Option, value string) []Option {
	if len(opts) == 0 {
		return nil
	}
	out := slices.Clone(opts)
	for i := range out {
		out[i].Selected = out[i].Value == value
	}
	return out
}

// ProviderFields returns the chosen provider's inputs, from its field descriptions.
func (f *Form) ProviderFields() []Field {
	var out []Field
	for _, pf := range f.Provider.GetFields() {
		name := InputName(pf.GetName())
		fd := Field{Name: name, Label: pf.GetLabel(), Help: pf.GetHelp(), Required: pf.GetRequired(), Error: f.Errors[name], Kind: "text", Autocomplete: "off"}
		if fd.Label == "" {
			fd.Label = pf.GetName()
		}
		switch pf.GetType() {
		case mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_ENUM:
			fd.Kind = "select"
			for _, o := range pf.GetOptions() {
				fd.Options = append(fd.Options, Option{Value: o, Label: o})
			}
			if !pf.GetRequired() && pf.GetDefaultValue() == "" {
				fd.Options = append([]Option{{Value: "", Label: "(not set)"}}, fd.Options...)
			}
		case mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_BOOL:
			fd.Kind = "select"
			fd.Options = []Option{{Value: "true", Label: "Yes"}, {Value: "false", Label: "No"}}
			if pf.GetDefaultValue() == "" {
				fd.Options = append([]Option{{Value: "", Label: "(not set)"}}, fd.Options...)
			}
		case mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_INT:
			fd.Kind = "number"
		case mailintakev1.ConfigFieldType_CONFIG_FIELD_TYPE_URL:
			fd.Kind = "url"
		}
		if pf.GetSecret() {
			fd.Kind, fd.Autocomplete, fd.Options = "password", "new-password", nil
			fd.Held = f.Held[pf.GetName()]
			if fd.Held != "" {
				fd.Required = false
			}
		} else {
			fd.Value = f.Values[name]
			if pf.GetDefaultValue() != "" && !isChoice(pf) {
				fd.Placeholder = pf.GetDefaultValue()
				if fd.Help != "" {
					fd.Help += " "
				}
				fd.Help += "Empty: " + pf.GetDefaultValue() + "."
			}
		}
		fd.Options = selected(fd.Options, fd.Value)
		fd.Autofocus = fd.Error != "" && f.firstError() == name
		out = append(out, fd)
	}
	return out
}

// Submission is a parsed form.
type Submission struct {
	Mailbox *mailintakev1.Mailbox
	// Secrets are the secret provider fields typed in this submission (non-empty only).
	Secrets map[string]string
}

var securities = map[string]mailintakev1.Security{"tls": mailintakev1.Security_SECURITY_TLS, "starttls": mailintakev1.Security_SECURITY_STARTTLS, "none": mailintakev1.Security_SECURITY_NONE}
var startFroms = map[string]mailintakev1.StartFrom{"new": mailintakev1.StartFrom_START_FROM_NEW, "unseen": mailintakev1.StartFrom_START_FROM_UNSEEN, "all": mailintakev1.StartFrom_START_FROM_ALL}
var afterAcks = map[string]mailintakev1.AfterAckAction{"mark_seen": mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN, "move": mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE,
	"delete": mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE, "keep": mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}

func nameOf[K comparable](m map[string]K, v K, def string) string {
	for k, x := range m {
		if x == v {
			return k
		}
	}
	return def
}

var protocols = map[string]mailintakev1.Protocol{"imap": mailintakev1.Protocol_PROTOCOL_IMAP, "pop3": mailintakev1.Protocol_PROTOCOL_POP3}

func protocolName(p mailintakev1.Protocol) string { return nameOf(protocols, p, "imap") }
func securityName(s mailintakev1.Security) string { return nameOf(securities, s, "tls") }
func startFromName(s mailintakev1.StartFrom) string {
	return nameOf(startFroms, s, "new")
}
func afterAckName(a mailintakev1.AfterAckAction) string { return nameOf(afterAcks, a, "mark_seen") }

// Read takes the submitted values into the form (secrets excepted) and builds the mailbox they
// describe. Values that cannot even be sent (a port that is not a number, an unknown choice)
// are recorded in f.Errors; the API checks everything else.
func (f *Form) Read(in url.Values) *Submission {
	v := f.Values
	for _, name := range []string{DisplayName, Tenant, Host, Port, Security, Username, AuthProvider, StartFrom, AfterAck, AfterAckFolder, Folder, CAPEM,
		MaxMessageBytes, TicketPattern, PollInterval, SMTPHost, SMTPPort, SMTPSecurity, SMTPFrom, SMTPMaxPerMinute, SentFolder} {
		if _, ok := in[name]; ok || f.ID == "" {
			v[name] = strings.TrimSpace(in.Get(name))
		}
	}
	if f.ID == "" {
		// The protocol is fixed once saved (the API refuses a change): an edit keeps the stored one.
		v[Protocol] = strings.TrimSpace(in.Get(Protocol))
		if v[Protocol] == "" {
			v[Protocol] = "imap"
		}
	}
	v[CAPEM] = strings.TrimSpace(strings.ReplaceAll(in.Get(CAPEM), "\r\n", "\n"))
	for _, box := range []string{Enabled, SendingEnabled, SaveSentCopy} {
		if in.Get(box) != "" {
			v[box] = "true"
		} else {
			delete(v, box)
		}
	}
	f.WithProvider(v[AuthProvider])

	mb := &mailintakev1.Mailbox{Id: f.ID, DisplayName: v[DisplayName], Host: v[Host], Username: v[Username], AuthProvider: v[AuthProvider],
		Folder: v[Folder], CaPem: v[CAPEM], TicketPattern: v[TicketPattern], Enabled: v[Enabled] != "", AuthConfig: map[string]string{}}
	if f.ID == "" {
		mb.Tenant = v[Tenant]
	}
	proto, ok := protocols[v[Protocol]]
	if !ok {
		f.Errors[Protocol] = "choose IMAP or POP3"
	}
	mb.Protocol = proto
	sec, ok := securities[v[Security]]
	if !ok {
		f.Errors[Security] = "choose TLS, STARTTLS or none"
	}
	mb.Security = sec
	switch p := v[Port]; {
	case p == "" && proto == mailintakev1.Protocol_PROTOCOL_POP3:
		// The API fills in POP3's usual port: 995 with TLS, 110 otherwise.
	case p == "" && sec == mailintakev1.Security_SECURITY_TLS:
		mb.Port = 993
	case p == "":
		mb.Port = 143
	default:
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			f.Errors[Port] = fmt.Sprintf("%q is not a port number: give a number from 1 to 65535 (IMAP: 993 for TLS, 143 for STARTTLS; POP3: 995 for TLS, 110 for STARTTLS)", p)
		}
		mb.Port = uint32(n)
	}
	if p := v[PollInterval]; p != "" && proto == mailintakev1.Protocol_PROTOCOL_POP3 {
		// Only a POP3 mailbox is polled: the value is not sent for IMAP (the API refuses it).
		d, err := ParseDuration(p)
		if err != nil {
			f.Errors[PollInterval] = err.Error()
		} else {
			mb.PollInterval = durationpb.New(d)
		}
	}
	f.readSending(mb)
	if sf, ok := startFroms[v[StartFrom]]; ok {
		mb.StartFrom = sf
	} else if v[StartFrom] != "" {
		f.Errors[StartFrom] = "choose one of the listed options"
	}
	mb.AfterAck = &mailintakev1.AfterAck{Folder: v[AfterAckFolder]}
	if a, ok := afterAcks[v[AfterAck]]; ok {
		mb.AfterAck.Action = a
	} else if v[AfterAck] != "" {
		f.Errors[AfterAck] = "choose one of the listed options"
	}
	if mb.AfterAck.Action != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE {
		mb.AfterAck.Folder = ""
	}
	if m := v[MaxMessageBytes]; m != "" {
		n, err := strconv.ParseUint(m, 10, 64)
		if err != nil {
			f.Errors[MaxMessageBytes] = fmt.Sprintf("%q is not a number of bytes", m)
		}
		mb.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: n}
	}
	s := &Submission{Mailbox: mb, Secrets: map[string]string{}}
	for _, pf := range f.Provider.GetFields() {
		name := InputName(pf.GetName())
		val := in.Get(name)
		if pf.GetSecret() {
			if val != "" {
				s.Secrets[pf.GetName()] = val
			}
			continue
		}
		val = strings.TrimSpace(val)
		v[name] = val
		if val != "" {
			mb.AuthConfig[pf.GetName()] = val
		}
	}
	return s
}

// readSending reads the outgoing mail server's inputs into mb.
func (f *Form) readSending(mb *mailintakev1.Mailbox) {
	v := f.Values
	mb.SendingEnabled = v[SendingEnabled] != ""
	mb.SmtpHost = v[SMTPHost]
	mb.SmtpFrom = v[SMTPFrom]
	mb.SaveSentCopy = v[SaveSentCopy] != ""
	mb.SentFolder = v[SentFolder]
	if s := v[SMTPSecurity]; s != "" {
		sec, ok := securities[s]
		if !ok {
			f.Errors[SMTPSecurity] = "choose STARTTLS, TLS or none"
		}
		mb.SmtpSecurity = sec
	}
	if p := v[SMTPPort]; p != "" {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			f.Errors[SMTPPort] = fmt.Sprintf("%q is not a port number: give a number from 1 to 65535 (587 for STARTTLS, 465 for TLS)", p)
		}
		mb.SmtpPort = uint32(n)
	}
	if m := v[SMTPMaxPerMinute]; m != "" {
		n, err := strconv.ParseUint(m, 10, 32)
		if err != nil {
			f.Errors[SMTPMaxPerMinute] = fmt.Sprintf("%q is not a number of messages", m)
		}
		mb.SmtpMaxPerMinute = uint32(n)
	}
}

// ParseDuration reads a poll interval as typed: a Go duration ("60s", "5m", "1h30m") or a
// plain number of seconds ("300").
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 60s, 5m, 1h or a number of seconds", s)
	}
	return d, nil
}

// FormatDuration writes a duration as ParseDuration reads it, without zero units: 1m, 1h30m,
// 90s stays 1m30s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UpdateMask lists the fields an edit form changes (auth_secrets only when a secret was given).
// The protocol is not among them: it is fixed once the mailbox is saved.
func UpdateMask(withSecrets bool) []string {
	mask := []string{"display_name", "host", "port", "security", "username", "auth_provider", "auth_config", "folder", "after_ack",
		"start_from", "ca_pem", "limits", "ticket_pattern", "poll_interval", "sending_enabled", "smtp_host", "smtp_port", "smtp_security",
		"smtp_from", "smtp_max_per_minute", "save_sent_copy", "sent_folder"}
	if withSecrets {
		mask = append(mask, "auth_secrets")
	}
	return mask
}

// InputFor maps an API field path (mailbox.host, mailbox.auth_config.client_id, …) to the
// input of the form it concerns, or "" when none does.
func (f *Form) InputFor(path string) string {
	path = strings.TrimPrefix(path, "mailbox.")
	switch path {
	case DisplayName, Host, Port, Security, Username, AuthProvider, StartFrom, Folder, CAPEM, TicketPattern, PollInterval,
		SendingEnabled, SMTPHost, SMTPPort, SMTPSecurity, SMTPFrom, SMTPMaxPerMinute, SaveSentCopy, SentFolder:
		return path
	case Protocol:
		if f.ID == "" {
			return Protocol
		}
		return ""
	case Tenant:
		if f.ID == "" {
			return Tenant
		}
		return ""
	case "after_ack", "after_ack.action":
		return AfterAck
	case "after_ack.folder":
		return AfterAckFolder
	case "limits.max_message_bytes":
		return MaxMessageBytes
	}
	for _, prefix := range []string{"auth_config.", "auth_secrets."} {
		if name, ok := strings.CutPrefix(path, prefix); ok {
			for _, pf := range f.Provider.GetFields() {
				if pf.GetName() == name {
					return InputName(name)
				}
			}
		}
	}
	return ""
}

// AddViolations puts the API's field violations next to their inputs; those of no input
// become Problems, with their field path.
func (f *Form) AddViolations(vs []*errdetails.BadRequest_FieldViolation) {
	for _, v := range vs {
		if in := f.InputFor(v.GetField()); in != "" {
			if _, dup := f.Errors[in]; !dup {
				f.Errors[in] = v.GetDescription()
			}
			continue
		}
		f.Problems = append(f.Problems, v.GetField()+": "+v.GetDescription())
	}
}

// Invalid reports whether the form has errors.
func (f *Form) Invalid() bool { return len(f.Errors) > 0 || len(f.Problems) > 0 }

// ErrorList returns the errors in the order of the form's inputs, for the summary at its top.
func (f *Form) ErrorList() []Field {
	order := []string{DisplayName, Tenant, Protocol, Host, Port, Security, PollInterval, Username, AuthProvider}
	for _, pf := range f.Provider.GetFields() {
		order = append(order, InputName(pf.GetName()))
	}
	order = append(order, StartFrom, AfterAck, AfterAckFolder, SendingEnabled, SMTPHost, SMTPPort, SMTPSecurity, SMTPFrom, SMTPMaxPerMinute,
		SaveSentCopy, SentFolder, Folder, MaxMessageBytes, TicketPattern, CAPEM)
	var out []Field
	for _, name := range order {
		if msg, ok := f.Errors[name]; ok {
			label := definitions[name].Label
			for _, pf := range f.Provider.GetFields() {
				if InputName(pf.GetName()) == name {
					label = pf.GetLabel()
				}
			}
			out = append(out, Field{Name: name, Label: label, Error: msg})
		}
	}
	return out
}
