package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// defFlags are the flags that describe a mailbox (add, update, test).
type defFlags struct {
	name, host, security, username, provider, caFile, folder, afterAck, startFrom, tenant, ticketPattern string
	protocol                                                                                             string
	pollInterval                                                                                         time.Duration
	port                                                                                                 int
	config                                                                                               []string
	passwordStdin, secretStdin, disabled, skipVerify                                                     bool
	maxMessageBytes                                                                                      uint64
	secretField                                                                                          string
	// Sending (SMTP submission).
	sending                          bool
	smtpHost, smtpSecurity, smtpFrom string
	smtpPort                         int
	smtpMaxPerMinute                 uint32
	// The Sent copy (IMAP APPEND).
	saveSentCopy bool
	sentFolder   string
}

// register adds the flags to fs.
func (d *defFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.name, "name", "", "display name")
	fs.StringVar(&d.host, "host", "", "mail server host, e.g. outlook.office365.com")
	fs.StringVar(&d.protocol, "protocol", "imap", "imap or pop3 (POP3 sees the inbox only; its after-ack is delete or keep)")
	fs.IntVar(&d.port, "port", 0, "mail server port (default 993 for tls, 143 for starttls and none; pop3: 995, 110)")
	fs.DurationVar(&d.pollInterval, "poll-interval", 0, "how often a pop3 mailbox is polled, 5s to 24h (default 1m)")
	fs.StringVar(&d.security, "security", "tls", "tls, starttls or none")
	fs.StringVar(&d.username, "username", "", "the account to sign in as")
	fs.StringVar(&d.provider, "provider", "", "auth provider, e.g. basic or o365 (see 'mailintake providers')")
	fs.StringArrayVar(&d.config, "config", nil, "provider field as `key=value` (repeatable)")
	fs.BoolVar(&d.passwordStdin, "password-stdin", false, "read the password from standard input")
	fs.BoolVar(&d.secretStdin, "secret-stdin", false, "read the client secret (or the secret named by --secret-field) from standard input")
	fs.StringVar(&d.secretField, "secret-field", "client_secret", "the provider's secret field --secret-stdin fills")
	fs.StringVar(&d.caFile, "ca-file", "", "PEM CA certificates to trust for the mail server")
	fs.BoolVar(&d.skipVerify, "insecure-skip-verify", false, "do not verify the mail server's certificate (testing only)")
	fs.StringVar(&d.folder, "folder", "", "folder to watch (default INBOX)")
	fs.StringVar(&d.afterAck, "after-ack", "", "mark-seen (default), move:FOLDER, delete or keep (pop3: delete, or keep, the default)")
	fs.StringVar(&d.startFrom, "start-from", "", "new (default), unseen or all")
	fs.StringVar(&d.tenant, "tenant", "", "tenant the mailbox belongs to (required with the admin token)")
	fs.StringVar(&d.ticketPattern, "ticket-pattern", "", `regular expression finding a ticket reference in the subject, e.g. '\[#(\d+)\]'`)
	fs.Uint64Var(&d.maxMessageBytes, "max-message-size", 0, "messages larger than this many bytes are quarantined")
	fs.BoolVar(&d.disabled, "disabled", false, "create the mailbox disabled")
	fs.BoolVar(&d.sending, "sending", false, "send mail as the mailbox (mailintake send); implied by --smtp-host; an o365 mailbox gets smtp.office365.com:587 starttls")
	fs.StringVar(&d.smtpHost, "smtp-host", "", "the submission server for sending, e.g. smtp.office365.com (turns sending on unless --sending=false)")
	fs.IntVar(&d.smtpPort, "smtp-port", 0, "the submission server's port (default 465 for tls, 587 for starttls, 25 for none)")
	fs.StringVar(&d.smtpSecurity, "smtp-security", "", "tls, starttls or none (default starttls, tls on port 465); --ca-file applies too")
	fs.StringVar(&d.smtpFrom, "smtp-from", "", `From address of sent mail, e.g. 'Support <support@example.com>' (default: the username)`)
	fs.Uint32Var(&d.smtpMaxPerMinute, "smtp-max-per-minute", 0, "send at most this many messages a minute (default 30, Exchange Online's limit)")
	fs.BoolVar(&d.saveSentCopy, "save-sent-copy", false, "save a copy of sent mail in the Sent folder by IMAP APPEND (not for Microsoft 365 or Gmail: they file one themselves)")
	fs.StringVar(&d.sentFolder, "sent-folder", "", `the folder --save-sent-copy saves to (default: the one the server marks \Sent, else "Sent")`)
}

// invalid is a bad flag value, reported like the server's field violations (exit 1).
func invalid(field, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf("invalid request:\n  mailbox.%s: %s", field, fmt.Sprintf(format, args...))}
}

var securities = map[string]mailintakev1.Security{
	"tls": mailintakev1.Security_SECURITY_TLS, "ssl": mailintakev1.Security_SECURITY_TLS,
	"starttls": mailintakev1.Security_SECURITY_STARTTLS, "none": mailintakev1.Security_SECURITY_NONE,
}

var protocols = map[string]mailintakev1.Protocol{
	"imap": mailintakev1.Protocol_PROTOCOL_IMAP, "pop3": mailintakev1.Protocol_PROTOCOL_POP3, "pop": mailintakev1.Protocol_PROTOCOL_POP3,
}

var startFroms = map[string]mailintakev1.StartFrom{
	"new": mailintakev1.StartFrom_START_FROM_NEW, "unseen": mailintakev1.StartFrom_START_FROM_UNSEEN, "all": mailintakev1.StartFrom_START_FROM_ALL,
}

// parseAfterAck reads --after-ack: mark-seen, move:FOLDER, delete or keep.
func parseAfterAck(s string) (*mailintakev1.AfterAck, error) {
	action, folder, hasFolder := strings.Cut(s, ":")
	switch strings.ToLower(action) {
	case "mark-seen", "seen":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN}, nil
	case "move":
		if !hasFolder || folder == "" {
			return nil, invalid("after_ack.folder", "move needs a folder: --after-ack move:Processed")
		}
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE, Folder: folder}, nil
	case "delete":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}, nil
	case "keep":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}, nil
	}
	return nil, invalid("after_ack", "%q is not one of mark-seen, move:FOLDER, delete, keep", s)
}

// build turns the flags that were set into a mailbox definition and its field mask.
func (d *defFlags) build(fs *pflag.FlagSet, a *app, forCreate bool) (*mailintakev1.Mailbox, []string, error) {
	set := fs.Changed
	mb := &mailintakev1.Mailbox{DisplayName: d.name, Host: d.host, Username: d.username, AuthProvider: d.provider,
		Folder: d.folder, Tenant: d.tenant, TicketPattern: d.ticketPattern, Enabled: !d.disabled}
	var mask []string
	if forCreate || set("protocol") {
		p, ok := protocols[strings.ToLower(d.protocol)]
		if !ok {
			return nil, nil, invalid("protocol", "%q is not one of imap, pop3", d.protocol)
		}
		mb.Protocol = p
	}
	if set("poll-interval") {
		mb.PollInterval = durationpb.New(d.pollInterval)
	}
	if forCreate || set("security") {
		sec, ok := securities[strings.ToLower(d.security)]
		if !ok {
			return nil, nil, invalid("security", "%q is not one of tls, starttls, none", d.security)
		}
		mb.Security = sec
	}
	if set("port") {
		if d.port < 1 || d.port > 65535 { // the API reads 0 as "the usual port"; a typed 0 is a mistake
			return nil, nil, invalid("port", "must be between 1 and 65535, not %d", d.port)
		}
		mb.Port = uint32(d.port)
	} else if forCreate {
		// The server fills the same when the port is 0; filled here too for servers before it did.
		mb.Port = 993
		if mb.Security != mailintakev1.Security_SECURITY_TLS {
			mb.Port = 143
		}
		if mb.Protocol == mailintakev1.Protocol_PROTOCOL_POP3 {
			mb.Port = 995
			if mb.Security != mailintakev1.Security_SECURITY_TLS {
				mb.Port = 110
			}
		}
	}
	if d.afterAck != "" {
		aa, err := parseAfterAck(d.afterAck)
		if err != nil {
			return nil, nil, err
		}
		mb.AfterAck = aa
	}
	if d.startFrom != "" {
		sf, ok := startFroms[strings.ToLower(d.startFrom)]
		if !ok {
			return nil, nil, invalid("start_from", "%q is not one of new, unseen, all", d.startFrom)
		}
		mb.StartFrom = sf
	}
	if d.caFile != "" {
		pem, err := os.ReadFile(d.caFile)
		if err != nil {
			return nil, nil, invalid("ca_pem", "--ca-file: %v", err)
		}
		mb.CaPem = string(pem)
	}
	mb.InsecureSkipVerify = d.skipVerify
	if err := d.buildSending(fs, mb, forCreate, &mask); err != nil {
		return nil, nil, err
	}
	if d.maxMessageBytes > 0 {
		mb.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: d.maxMessageBytes}
	}
	if len(d.config) > 0 {
		mb.AuthConfig = map[string]string{}
		for _, kv := range d.config {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, nil, usagef("--config takes key=value, not %q", kv)
			}
			mb.AuthConfig[k] = v
		}
	}
	if d.passwordStdin && d.secretStdin {
		return nil, nil, usagef("--password-stdin and --secret-stdin both read standard input; give one")
	}
	if d.passwordStdin || d.secretStdin {
		v, err := readSecret(a.stdin)
		if err != nil {
			return nil, nil, err
		}
		key := "password"
		if d.secretStdin {
			key = d.secretField
		}
		mb.AuthSecrets = map[string]string{key: v}
	}
	for flagName, path := range map[string]string{
		"name": "display_name", "host": "host", "port": "port", "security": "security", "username": "username",
		"provider": "auth_provider", "config": "auth_config", "ca-file": "ca_pem", "insecure-skip-verify": "insecure_skip_verify",
		"folder": "folder", "after-ack": "after_ack", "start-from": "start_from", "ticket-pattern": "ticket_pattern",
		"max-message-size": "limits", "disabled": "enabled", "protocol": "protocol", "poll-interval": "poll_interval",
	} {
		if set(flagName) {
			mask = append(mask, path)
		}
	}
	if mb.AuthSecrets != nil {
		mask = append(mask, "auth_secrets")
	}
	slices.Sort(mask)
	return mb, mask, nil
}

// buildSending reads the sending flags into mb and the mask. --smtp-host turns sending on unless
// --sending says otherwise; --smtp-security without --smtp-port resets the port to the
// security's default.
func (d *defFlags) buildSending(fs *pflag.FlagSet, mb *mailintakev1.Mailbox, forCreate bool, mask *[]string) error {
	set := fs.Changed
	mb.SmtpHost, mb.SmtpFrom, mb.SmtpMaxPerMinute = d.smtpHost, d.smtpFrom, d.smtpMaxPerMinute
	mb.SaveSentCopy, mb.SentFolder = d.saveSentCopy, d.sentFolder
	switch {
	case set("sending"):
		mb.SendingEnabled = d.sending
		*mask = append(*mask, "sending_enabled")
	case set("smtp-host"):
		mb.SendingEnabled = d.smtpHost != ""
		*mask = append(*mask, "sending_enabled")
	}
	if set("smtp-security") {
		sec, ok := securities[strings.ToLower(d.smtpSecurity)]
		if !ok {
			return invalid("smtp_security", "%q is not one of tls, starttls, none", d.smtpSecurity)
		}
		mb.SmtpSecurity = sec
		if !set("smtp-port") && !forCreate {
			*mask = append(*mask, "smtp_port") // 0: the default of the new security
		}
	}
	if set("smtp-port") {
		if d.smtpPort < 1 || d.smtpPort > 65535 {
			return invalid("smtp_port", "must be between 1 and 65535, not %d", d.smtpPort)
		}
		mb.SmtpPort = uint32(d.smtpPort)
	}
	for flagName, path := range map[string]string{"smtp-host": "smtp_host", "smtp-port": "smtp_port", "smtp-security": "smtp_security",
		"smtp-from": "smtp_from", "smtp-max-per-minute": "smtp_max_per_minute", "save-sent-copy": "save_sent_copy", "sent-folder": "sent_folder"} {
		if set(flagName) && !slices.Contains(*mask, path) {
			*mask = append(*mask, path)
		}
	}
	return nil
}

// readSecret reads one secret from r: the whole input without its final line break.
func readSecret(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// promptSecrets asks on the terminal for the provider's required secrets that were not given.
func (a *app) promptSecrets(ctx context.Context, mb *mailintakev1.Mailbox) error {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || mb.AuthProvider == "" {
		return nil
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Providers.ListAuthProviders(rctx, &mailintakev1.ListAuthProvidersRequest{})
	if err != nil {
		return err
	}
	for _, p := range resp.GetProviders() {
		if p.GetName() != mb.AuthProvider {
			continue
		}
		for _, fld := range p.GetFields() {
			if !fld.GetSecret() || !fld.GetRequired() || mb.AuthSecrets[fld.GetName()] != "" {
				continue
			}
			label := fld.GetLabel()
			if label == "" {
				label = fld.GetName()
			}
			fmt.Fprintf(a.stderr, "%s: ", label)
			v, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.stderr)
			if err != nil {
				return err
			}
			if mb.AuthSecrets == nil {
				mb.AuthSecrets = map[string]string{}
			}
			mb.AuthSecrets[fld.GetName()] = string(v)
		}
	}
	return nil
}
