package outbox

import (
	"fmt"
	"net/mail"
	"strings"

	"github.com/mailintake/mailintake/internal/smtpsend"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// What a mailbox's definition says about sending.

// DefaultPerMinute is how many messages a minute a mailbox sends when it sets no limit:
// Exchange Online's limit (more are delayed by the server, or refused with 4.3.2).
const DefaultPerMinute = 30

// Office365Host, Office365Port and Office365Security are the submission server of Microsoft 365
// mailboxes (smtp.office365.com, port 587, STARTTLS).
const (
	Office365Host     = "smtp.office365.com"
	Office365Port     = 587
	Office365Security = mailintakev1.Security_SECURITY_STARTTLS
)

// SendingOn reports whether mail can be sent as the mailbox: sending is enabled and it names a
// submission server.
func SendingOn(mb *mailintakev1.Mailbox) bool {
	return mb.GetSendingEnabled() && mb.GetSmtpHost() != ""
}

// Security returns the mailbox's submission security with its default: TLS on port 465,
// otherwise STARTTLS.
func Security(mb *mailintakev1.Mailbox) mailintakev1.Security {
	if s := mb.GetSmtpSecurity(); s != mailintakev1.Security_SECURITY_UNSPECIFIED {
		return s
	}
	if mb.GetSmtpPort() == 465 {
		return mailintakev1.Security_SECURITY_TLS
	}
	return mailintakev1.Security_SECURITY_STARTTLS
}

// Port returns the mailbox's submission port with its default: 465 for TLS, 587 for STARTTLS,
// 25 for none.
func Port(mb *mailintakev1.Mailbox) int {
	if p := mb.GetSmtpPort(); p != 0 {
		return int(p)
	}
	switch Security(mb) {
	case mailintakev1.Security_SECURITY_TLS:
		return 465
	case mailintakev1.Security_SECURITY_NONE:
		return 25
	}
	return 587
}

// PerMinute returns how many messages a minute the mailbox sends.
func PerMinute(mb *mailintakev1.Mailbox) int {
	if n := mb.GetSmtpMaxPerMinute(); n > 0 {
		return int(n)
	}
	return DefaultPerMinute
}

// Target returns the mailbox's submission server: its smtp_host, port and security, with the
// mailbox's ca_pem and insecure_skip_verify, as the IMAP side uses them.
func Target(mb *mailintakev1.Mailbox) (smtpsend.Target, error) {
	t := smtpsend.Target{Host: mb.GetSmtpHost(), Port: Port(mb), SkipVerify: mb.GetInsecureSkipVerify()}
	switch Security(mb) {
	case mailintakev1.Security_SECURITY_TLS:
		t.Security = smtpsend.TLS
	case mailintakev1.Security_SECURITY_NONE:
		t.Security = smtpsend.Plaintext
	default:
		t.Security = smtpsend.StartTLS
	}
	if pem := mb.GetCaPem(); pem != "" {
		pool, err := smtpsend.CertPool([]byte(pem))
		if err != nil {
			return t, fmt.Errorf("the mailbox's ca_pem: %w", err)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// Account is what the mailbox's provider sees when it issues an SMTP credential: protocol
// "smtp" and the submission server, so it picks the mechanism (basic: PLAIN or LOGIN) and the
// scope (o365: SMTP.Send) for sending.
func Account(mb *mailintakev1.Mailbox, secrets map[string]string) authplugin.Account {
	return authplugin.Account{MailboxID: mb.GetId(), Protocol: "smtp", Host: mb.GetSmtpHost(), Port: Port(mb),
		Username: mb.GetUsername(), Config: mb.GetAuthConfig(), Secrets: secrets}
}

// From returns the From a message sent as the mailbox carries by default: its smtp_from, else
// its username when that is an email address; "" when it has neither.
func From(mb *mailintakev1.Mailbox) string {
	if f := strings.TrimSpace(mb.GetSmtpFrom()); f != "" {
		return f
	}
	if u := mb.GetUsername(); strings.Contains(u, "@") {
		if _, err := mail.ParseAddress(u); err == nil {
			return u
		}
	}
	return ""
}

// filingHosts are the host names (and the domains under which any host counts) of the providers
// whose submission servers file a copy of every message in the sender's Sent folder themselves:
// Microsoft 365 (Exchange Online's Sent Items) and Gmail (Sent Mail).
var filingHosts = []string{"office365.com", "outlook.office.com", "outlook.com", "gmail.com", "googlemail.com"}

// FilesSentCopy reports whether the mailbox's servers file a copy of sent mail themselves, so
// that an IMAP APPEND would make a second one: a Microsoft 365 mailbox (provider o365, or an
// IMAP or submission server under office365.com, outlook.office.com or outlook.com) or a Gmail
// one (provider google, or a server under gmail.com or googlemail.com). It names the service,
// "" for any other.
func FilesSentCopy(mb *mailintakev1.Mailbox) string {
	switch mb.GetAuthProvider() {
	case "o365":
		return "Microsoft 365"
	case "google":
		return "Gmail"
	}
	for _, h := range []string{mb.GetHost(), mb.GetSmtpHost()} {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		for _, d := range filingHosts {
			if h == d || strings.HasSuffix(h, "."+d) {
				if strings.Contains(d, "gmail") || strings.Contains(d, "google") {
					return "Gmail"
				}
				return "Microsoft 365"
			}
		}
	}
	return ""
}

// SaveSentCopyOn reports whether a copy of mail sent as the mailbox is saved in its Sent folder
// by IMAP APPEND: save_sent_copy is set, the mailbox is read over IMAP, and its servers do not
// file one themselves (FilesSentCopy).
func SaveSentCopyOn(mb *mailintakev1.Mailbox) bool {
	return mb.GetSaveSentCopy() && mb.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 && FilesSentCopy(mb) == ""
}
