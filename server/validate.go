package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Limits of the mailbox definition.
const (
	maxDisplayName      = 200
	maxMessageBytesCap  = 1 << 30
	defaultFolder       = "INBOX"
	maxFolderName       = 1000
	maxTicketPatternLen = 500
)

var hostLabel = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

func validMailboxName(s string) bool {
	return s != "" && len(s) <= maxFolderName && !strings.ContainsAny(s, "\x00\r\n")
}

// normalize fills defaults into a mailbox definition.
func normalize(mb *mailintakev1.Mailbox) {
	if mb.Protocol == mailintakev1.Protocol_PROTOCOL_UNSPECIFIED {
		mb.Protocol = mailintakev1.Protocol_PROTOCOL_IMAP
	}
	if mb.Security == mailintakev1.Security_SECURITY_UNSPECIFIED {
		mb.Security = mailintakev1.Security_SECURITY_TLS
	}
	mb.Host = strings.TrimSpace(mb.Host)
	if mb.Folder == "" {
		mb.Folder = defaultFolder
	}
	if mb.AfterAck == nil {
		mb.AfterAck = &mailintakev1.AfterAck{}
	}
	if mb.AfterAck.Action == mailintakev1.AfterAckAction_AFTER_ACK_ACTION_UNSPECIFIED {
		mb.AfterAck.Action = mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN
		if mb.Protocol == mailintakev1.Protocol_PROTOCOL_POP3 {
			// POP3 has no flags: acknowledged mail stays unless DELETE is asked for.
			mb.AfterAck.Action = mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP
		}
	}
	if mb.Port == 0 {
		mb.Port = defaultPort(mb.Protocol, mb.Security)
	}
	if mb.StartFrom == mailintakev1.StartFrom_START_FROM_UNSPECIFIED {
		mb.StartFrom = mailintakev1.StartFrom_START_FROM_NEW
	}
	if mb.AuthConfig == nil {
		mb.AuthConfig = map[string]string{}
	}
	normalizeSending(mb)
}

// defaultPort is the usual port of a protocol with a transport security: 993 or 143 for IMAP,
// 995 or 110 for POP3 (implicit TLS, or a plaintext greeting upgraded with STARTTLS/STLS or left
// plaintext when asked for).
func defaultPort(p mailintakev1.Protocol, sec mailintakev1.Security) uint32 {
	tls := sec == mailintakev1.Security_SECURITY_TLS
	switch {
	case p == mailintakev1.Protocol_PROTOCOL_POP3 && tls:
		return 995
	case p == mailintakev1.Protocol_PROTOCOL_POP3:
		return 110
	case tls:
		return 993
	}
	return 143
}

// normalizeSending fills the submission server's defaults: Microsoft 365's for an o365 mailbox
// whose sending is turned on without one, and the port and security that go together.
func normalizeSending(mb *mailintakev1.Mailbox) {
	mb.SmtpHost = strings.TrimSpace(mb.SmtpHost)
	mb.SmtpFrom = strings.TrimSpace(mb.SmtpFrom)
	if mb.SendingEnabled && mb.SmtpHost == "" && mb.AuthProvider == "o365" {
		mb.SmtpHost = outbox.Office365Host
		if mb.SmtpPort == 0 {
			mb.SmtpPort = outbox.Office365Port
		}
		if mb.SmtpSecurity == mailintakev1.Security_SECURITY_UNSPECIFIED {
			mb.SmtpSecurity = outbox.Office365Security
		}
	}
	if mb.SmtpHost != "" {
		mb.SmtpSecurity = outbox.Security(mb)
		mb.SmtpPort = uint32(outbox.Port(mb))
	}
}

// The bounds of a POP3 mailbox's poll_interval.
const (
	minPollInterval = 5 * time.Second
	maxPollInterval = 24 * time.Hour
)

// validatePOP3 checks what differs for a POP3 mailbox: POP3 sees one maildrop (the inbox),
// has neither flags nor folders (after_ack is DELETE or KEEP), and is polled (poll_interval,
// which only POP3 takes).
func validatePOP3(f func(string) string, mb *mailintakev1.Mailbox, v *violations) {
	if mb.Protocol != mailintakev1.Protocol_PROTOCOL_POP3 {
		if mb.PollInterval != nil {
			v.add(f("poll_interval"), "is for POP3 mailboxes only: an IMAP mailbox learns of new mail with IDLE")
		}
		return
	}
	if mb.PollInterval != nil {
		if err := mb.PollInterval.CheckValid(); err != nil {
			v.add(f("poll_interval"), "is not a valid duration: %v", err)
		} else if d := mb.PollInterval.AsDuration(); d < minPollInterval || d > maxPollInterval {
			v.add(f("poll_interval"), "must be between %s and %s, not %s", minPollInterval, maxPollInterval, d)
		}
	}
	switch mb.AfterAck.GetAction() {
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN:
		v.add(f("after_ack.action"), "MARK_SEEN is not possible over POP3, which has no flags: use DELETE (deleted at the session's QUIT once acknowledged) or KEEP")
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE:
		v.add(f("after_ack.action"), "MOVE is not possible over POP3, which has no folders: use DELETE (deleted at the session's QUIT once acknowledged) or KEEP")
	}
	if !strings.EqualFold(mb.Folder, defaultFolder) {
		v.add(f("folder"), "must be INBOX for POP3, which sees only the inbox (the maildrop), not %q", mb.Folder)
	}
}

// maxPerMinuteCap bounds smtp_max_per_minute.
const maxPerMinuteCap = 10000

// validateSending checks the submission settings.
func validateSending(f func(string) string, mb *mailintakev1.Mailbox, v *violations) {
	switch {
	case mb.SmtpHost == "" && mb.SendingEnabled:
		v.add(f("smtp_host"), "is required to send: the submission server, e.g. smtp.office365.com (filled in for o365 mailboxes)")
	case mb.SmtpHost != "" && !validHost(mb.SmtpHost):
		v.add(f("smtp_host"), "%q is not a host name or IP address", mb.SmtpHost)
	}
	if mb.SmtpPort > 65535 {
		v.add(f("smtp_port"), "must be between 1 and 65535 (587 for STARTTLS, 465 for TLS), not %d", mb.SmtpPort)
	}
	if _, ok := mailintakev1.Security_name[int32(mb.SmtpSecurity)]; !ok {
		v.add(f("smtp_security"), "unknown security mode %d: use TLS, STARTTLS or NONE", mb.SmtpSecurity)
	}
	if mb.SmtpFrom != "" {
		if a, err := mail.ParseAddress(mb.SmtpFrom); err != nil || strings.ContainsAny(mb.SmtpFrom, "\r\n") || !strings.Contains(a.Address, "@") {
			v.add(f("smtp_from"), "%q is not an email address (\"Name <address>\" or an address)", mb.SmtpFrom)
		}
	}
	if mb.SmtpMaxPerMinute > maxPerMinuteCap {
		v.add(f("smtp_max_per_minute"), "must be at most %d", maxPerMinuteCap)
	}
	if mb.SaveSentCopy {
		if svc := outbox.FilesSentCopy(mb); svc != "" {
			v.add(f("save_sent_copy"), "%s files a copy of sent mail in the Sent folder itself: a copy saved by IMAP APPEND would be a second one (leave it off)", svc)
		} else if mb.Protocol == mailintakev1.Protocol_PROTOCOL_POP3 {
			v.add(f("save_sent_copy"), "needs IMAP (APPEND): POP3 has no folders")
		}
	}
	if mb.SentFolder != "" && !validMailboxName(mb.SentFolder) {
		v.add(f("sent_folder"), "must be a folder name without line breaks, at most %d characters", maxFolderName)
	}
}

// validateMailbox checks a normalized definition. Field paths are prefixed with prefix
// ("mailbox."). Provider fields are checked by the provider itself.
func (s *Server) validateMailbox(ctx context.Context, prefix string, mb *mailintakev1.Mailbox, secrets map[string]string) error {
	var v violations
	f := func(name string) string { return prefix + name }
	if len(mb.DisplayName) > maxDisplayName {
		v.add(f("display_name"), "must be at most %d characters", maxDisplayName)
	}
	if _, ok := mailintakev1.Protocol_name[int32(mb.Protocol)]; !ok {
		v.add(f("protocol"), "unknown protocol %d", mb.Protocol)
	} else if mb.Protocol != mailintakev1.Protocol_PROTOCOL_IMAP && mb.Protocol != mailintakev1.Protocol_PROTOCOL_POP3 {
		v.add(f("protocol"), "only IMAP and POP3 are supported by this server")
	}
	validatePOP3(f, mb, &v)
	switch {
	case mb.Host == "":
		v.add(f("host"), "is required (the mail server's host name, e.g. outlook.office365.com)")
	case !validHost(mb.Host):
		v.add(f("host"), "%q is not a host name or IP address", mb.Host)
	}
	if mb.Port < 1 || mb.Port > 65535 {
		v.add(f("port"), "must be between 1 and 65535 (IMAP: 993 for TLS, 143 for STARTTLS; POP3: 995, 110), not %d", mb.Port)
	}
	if _, ok := mailintakev1.Security_name[int32(mb.Security)]; !ok {
		v.add(f("security"), "unknown security mode %d: use TLS, STARTTLS or NONE", mb.Security)
	}
	if mb.CaPem != "" {
		if err := checkPEM(mb.CaPem); err != nil {
			v.add(f("ca_pem"), "%v", err)
		}
	}
	switch {
	case mb.Username == "":
		v.add(f("username"), "is required")
	case len(mb.Username) > 320 || strings.ContainsAny(mb.Username, "\x00\r\n"):
		v.add(f("username"), "must be at most 320 characters without line breaks")
	}
	if !validMailboxName(mb.Folder) {
		v.add(f("folder"), "must be a folder name without line breaks, at most %d characters", maxFolderName)
	}
	if _, ok := mailintakev1.AfterAckAction_name[int32(mb.AfterAck.GetAction())]; !ok {
		v.add(f("after_ack.action"), "unknown action %d", mb.AfterAck.GetAction())
	} else if mb.AfterAck.GetAction() == mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE {
		switch {
		case !validMailboxName(mb.AfterAck.GetFolder()):
			v.add(f("after_ack.folder"), "is required for MOVE (the folder acknowledged mail moves to)")
		case mb.AfterAck.GetFolder() == mb.Folder:
			v.add(f("after_ack.folder"), "must differ from the watched folder %q", mb.Folder)
		}
	}
	if _, ok := mailintakev1.StartFrom_name[int32(mb.StartFrom)]; !ok {
		v.add(f("start_from"), "unknown value %d: use NEW, UNSEEN or ALL", mb.StartFrom)
	}
	if l := mb.Limits; l != nil {
		if l.MaxMessageBytes > maxMessageBytesCap {
			v.add(f("limits.max_message_bytes"), "must be at most %d", maxMessageBytesCap)
		}
		if l.MaxInlineAttachmentBytes > maxMessageBytesCap {
			v.add(f("limits.max_inline_attachment_bytes"), "must be at most %d", maxMessageBytesCap)
		}
	}
	if p := mb.TicketPattern; p != "" {
		if len(p) > maxTicketPatternLen {
			v.add(f("ticket_pattern"), "must be at most %d characters", maxTicketPatternLen)
		} else if _, err := regexp.Compile(p); err != nil {
			v.add(f("ticket_pattern"), "is not a valid regular expression: %v", err)
		}
	}
	for k := range mb.AuthConfig {
		if k == "" {
			v.add(f("auth_config"), "has an empty key")
		}
	}
	validateSending(f, mb, &v)
	if mb.AuthProvider == "" {
		v.add(f("auth_provider"), "is required (e.g. basic or o365)")
	} else if err := s.validateProvider(ctx, prefix, mb, secrets, &v); err != nil {
		return err
	}
	return v.err()
}

// validateProvider lets the provider check its fields and maps its violations onto request
// field paths. The provider's own description decides where a field lives: a field it declares
// secret is in auth_secrets (stored encrypted, never returned), any other in auth_config; a
// field given on the wrong side is a violation. It returns an error only when the provider
// could not be asked.
func (s *Server) validateProvider(ctx context.Context, prefix string, mb *mailintakev1.Mailbox, secrets map[string]string, v *violations) error {
	info, err := s.plugins.Describe(ctx, mb.AuthProvider)
	if errors.Is(err, pluginhost.ErrUnknownProvider) {
		names, _ := s.plugins.Discover()
		v.add(prefix+"auth_provider", "unknown provider %q (installed: %s)", mb.AuthProvider, strings.Join(names, ", "))
		return nil
	}
	if err != nil {
		return err
	}
	if proto := session.Account(mb, nil).Protocol; len(info.Protocols) > 0 && !slices.Contains(info.Protocols, proto) {
		v.add(prefix+"protocol", "provider %q does not serve %s (it serves %s): choose a protocol it serves, or another provider",
			mb.AuthProvider, strings.ToUpper(proto), strings.Join(info.Protocols, ", "))
	}
	if mb.SendingEnabled && len(info.Protocols) > 0 && !slices.Contains(info.Protocols, "smtp") {
		v.add(prefix+"sending_enabled", "provider %q issues no SMTP credentials (it serves %s): sending needs one that does",
			mb.AuthProvider, strings.Join(info.Protocols, ", "))
	}
	secret := map[string]bool{}
	for _, fld := range info.Fields {
		secret[fld.Name] = fld.Secret
		_, inConfig := mb.AuthConfig[fld.Name]
		_, inSecrets := secrets[fld.Name]
		switch {
		case fld.Secret && inConfig:
			v.add(prefix+"auth_config."+fld.Name, "is a secret of provider %q: give it in auth_secrets (auth_config is stored in the clear and shown to every reader)", mb.AuthProvider)
		case !fld.Secret && inSecrets && fld.Name != "username":
			v.add(prefix+"auth_secrets."+fld.Name, "is not a secret of provider %q: give it in auth_config", mb.AuthProvider)
		}
	}
	err = s.plugins.Validate(ctx, mb.AuthProvider, session.Account(mb, secrets))
	var verr *authplugin.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verr):
		for _, fv := range verr.Violations {
			path := prefix + "auth_config." + fv.Field
			switch {
			case fv.Field == "username":
				path = prefix + "username"
			case secret[fv.Field]:
				path = prefix + "auth_secrets." + fv.Field
			case !declared(info.Fields, fv.Field):
				// A field the provider checks but does not describe: where it was given.
				if _, ok := secrets[fv.Field]; ok {
					path = prefix + "auth_secrets." + fv.Field
				}
			}
			v.add(path, "%s", fv.Description)
		}
		return nil
	default:
		return err
	}
}

// declared reports whether the provider describes a field of that name.
func declared(fields []authplugin.Field, name string) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

func checkPEM(text string) error {
	rest := []byte(text)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %s block; only CERTIFICATE blocks are allowed", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("holds no PEM certificate")
	}
	return nil
}
