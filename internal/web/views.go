package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/web/mailboxform"
	"github.com/mailintake/mailintake/internal/web/static"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

var funcs = template.FuncMap{
	"static": static.Path,
	"when":   when,
	"size":   humanBytes,
	"describedby": func(f mailboxform.Field) string {
		var ids []string
		if f.Held != "" {
			ids = append(ids, f.Name+"-held")
		}
		if f.Help != "" {
			ids = append(ids, f.Name+"-help")
		}
		if f.Error != "" {
			ids = append(ids, f.Name+"-error")
		}
		return strings.Join(ids, " ")
	},
}

// timeView is a time as the page shows it: the local time with how long ago, and the
// machine-readable form for <time datetime>.
type timeView struct {
	ISO, Text string
}

// when formats a timestamp; a nil or zero one gives nil (the template shows nothing or "never").
func when(v any) *timeView {
	var t time.Time
	switch x := v.(type) {
	case *timestamppb.Timestamp:
		if x == nil {
			return nil
		}
		t = x.AsTime()
	case time.Time:
		t = x
	}
	if t.IsZero() || t.Unix() <= 0 {
		return nil
	}
	return &timeView{ISO: t.UTC().Format(time.RFC3339), Text: t.Local().Format("2006-01-02 15:04:05") + " (" + relative(t) + ")"}
}

// relative says how long ago, or how far ahead, t is.
func relative(t time.Time) string {
	d := time.Since(t)
	ahead := d < 0
	if ahead {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if ahead {
		return "in " + s
	}
	return s + " ago"
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// stateView is a mailbox's state in words, with a class for its colour.
type stateView struct {
	Code   string // e.g. "idle", "auth_failed": data-state
	Label  string
	Detail string // the server's own words
	Class  string // ok, warn, bad, off
}

var stateLabels = map[mailintakev1.MailboxState]struct{ label, class string }{
	mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING:             {"Connecting", "warn"},
	mailintakev1.MailboxState_MAILBOX_STATE_IDLE:                   {"Watching for mail", "ok"},
	mailintakev1.MailboxState_MAILBOX_STATE_SYNCING:                {"Fetching mail", "ok"},
	mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED:            {"Sign-in failed", "bad"},
	mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION: {"Waiting for sign-in", "warn"},
	mailintakev1.MailboxState_MAILBOX_STATE_ERROR:                  {"Failing, retrying", "bad"},
	mailintakev1.MailboxState_MAILBOX_STATE_DISABLED:               {"Disabled", "off"},
	mailintakev1.MailboxState_MAILBOX_STATE_AFTER_ACK_FAILING:      {"Delivering; the after-ack action fails", "warn"},
}

func stateOf(st *mailintakev1.MailboxStatus) stateView {
	l, ok := stateLabels[st.GetState()]
	if !ok {
		l.label, l.class = "Unknown", "warn"
	}
	return stateView{Code: strings.ToLower(strings.TrimPrefix(st.GetState().String(), "MAILBOX_STATE_")), Label: l.label, Detail: st.GetMessage(), Class: l.class}
}

// tokenHealth describes a mailbox's OAuth token in words; "" for a provider without tokens.
func tokenHealth(st *mailintakev1.MailboxStatus) (string, []string) {
	th := st.GetTokenHealth()
	if th == nil {
		return "", nil
	}
	var parts []string
	if e := th.GetAccessTokenExpireTime(); e != nil && e.AsTime().Unix() > 0 {
		if time.Until(e.AsTime()) > 0 {
			parts = append(parts, "access token valid until "+e.AsTime().Local().Format("15:04")+" ("+relative(e.AsTime())+")")
		} else {
			parts = append(parts, "access token expired "+relative(e.AsTime())+"; a new one is fetched at the next connection")
		}
	}
	if t := th.GetLastRefreshTime(); t != nil && t.AsTime().Unix() > 0 {
		parts = append(parts, "issued "+relative(t.AsTime()))
	}
	if t := th.GetStateRotateTime(); t != nil && t.AsTime().Unix() > 0 {
		parts = append(parts, "refresh token rotated "+relative(t.AsTime()))
	}
	s := strings.Join(parts, "; ")
	if s == "" && len(th.GetWarnings()) == 0 {
		s = "no token issued yet"
	}
	return s, th.GetWarnings()
}

// lastError is a mailbox's last error in words, with what to do when the provider said.
func lastError(st *mailintakev1.MailboxStatus) string {
	var parts []string
	if af := st.GetAuthFailure(); af != nil {
		msg := af.GetMessage()
		if af.GetProviderCode() != "" {
			msg += " (" + af.GetProviderCode() + ")"
		}
		if af.GetAction() != "" {
			msg += " What to do: " + af.GetAction()
		}
		if msg != "" {
			parts = append(parts, msg)
		}
	}
	if e := st.GetLastError(); e != "" && !strings.Contains(strings.Join(parts, " "), e) {
		parts = append(parts, e)
	}
	return strings.Join(parts, " ")
}

// server describes where a mailbox connects.
func serverOf(mb *mailintakev1.Mailbox) string {
	return fmt.Sprintf("%s:%d (%s)", mb.GetHost(), mb.GetPort(), securityWords[mb.GetSecurity()])
}

// securityWords names a connection's security as the pages show it.
var securityWords = map[mailintakev1.Security]string{mailintakev1.Security_SECURITY_TLS: "TLS",
	mailintakev1.Security_SECURITY_STARTTLS: "STARTTLS", mailintakev1.Security_SECURITY_NONE: "no encryption"}

// submissionOf is the mailbox's submission server as shown, e.g. "smtp.example.com:587
// (STARTTLS)", or "" when it has none.
func submissionOf(mb *mailintakev1.Mailbox) string {
	if mb.GetSmtpHost() == "" {
		return ""
	}
	// The port and security the outbox uses, defaults included.
	return fmt.Sprintf("%s:%d (%s)", mb.GetSmtpHost(), outbox.Port(mb), securityWords[outbox.Security(mb)])
}

// afterAckWords says what happens to a message once it is acknowledged.
func afterAckWords(a *mailintakev1.AfterAck) string {
	switch a.GetAction() {
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE:
		return "moved to " + a.GetFolder()
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE:
		return "deleted"
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP:
		return "left as it is"
	}
	return "marked as read"
}

func startFromWords(s mailintakev1.StartFrom) string {
	switch s {
	case mailintakev1.StartFrom_START_FROM_UNSEEN:
		return "unread mail already there, then new mail"
	case mailintakev1.StartFrom_START_FROM_ALL:
		return "every message already there, then new mail"
	}
	return "only new mail"
}
