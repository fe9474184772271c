package parse

import (
	"strings"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// reasonWords are the words servers use for each reason, in the order they are tried: the
// specific ones (quota, size) before the general (an unknown user's notice often says
// "rejected" too; a full mailbox's, "size limit"). All lower case; English first, then the languages seen in the wild.
var reasonWords = []struct {
	reason mailintakev1.BounceReason
	words  []string
}{
	{mailintakev1.BounceReason_BOUNCE_REASON_MAILBOX_FULL, []string{
		"quota", "mailbox size", "mailbox exceeds", "mailbox is over", "too many messages", "zuviele mails", "mailbox full", "mailbox is full", "mailbox has exceeded", "mail box full", "box is full",
		"exceeded storage", "insufficient storage", "space not enough", "too much mail", "disk full",
		"mailfolder is full", "inbox is full", "full mailbox", "storage limit", "postfach voll", "speicherplatz",
		"boîte pleine", "boite pleine", "casella piena", "buzón lleno", "caixa cheia", "容量",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_MESSAGE_TOO_LARGE, []string{
		"message too large", "message is too large", "message too big", "message is too big", "too big for",
		"message size exceeds", "exceeds size limit", "exceeds the size limit", "size limit", "maximum message size",
		"maximum incoming message size", "message length exceeds", "mail size", "message file too big",
		"exceeds the maximum size", "larger than the", "zu groß", "trop volumineux", "demasiado grande",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_UNKNOWN_USER, []string{
		"user unknown", "unknown user", "no such user", "no such mailbox", "no such recipient", "no such address",
		"mailbox unavailable", "mailbox not found", "mailbox unknown", "mailbox does not exist", "no mailbox",
		"no mail box", "does not exist", "doesn't exist", "not exist", "invalid recipient", "recipient rejected",
		"address rejected", "unknown recipient", "recipient unknown", "not a known user", "unknown address",
		"addressee unknown", "user not found", "recipient not found", "address not found", "invalid mailbox",
		"invalid address", "bad recipient", "bad_recipient", "not listed", "recipient name is not recognized",
		"not our customer", "suspended", "disabled", "discontinued", "deactivated", "inactive", "not an active",
		"no longer", "mail-box not found", "mailbox not available", "account closed", "account has been closed",
		"no account", "is not a valid", "not a valid user", "that's not a valid user", "no such person",
		"unrouteable address", "unknown local", "user doesn't have", "doesn't have a", "nie istnieje",
		"unbekannt", "existiert nicht", "n'existe pas", "inconnu", "no existe", "inesistente", "sconosciuto",
		"não existe", "onbekend", "bestaat niet", "не существует", "не найден", "宛先不明", "存在しません",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_HOST_UNKNOWN, []string{
		"host unknown", "unknown host", "host not found", "domain not found", "no such domain", "unknown domain",
		"name or service not known", "host or domain name not found", "unrouteable", "unroutable",
		"no mx", "mx record", "could not find a gateway", "domain does not exist", "nameserver error",
		"unable to resolve", "dns error", "malformed", "invalid domain", "not reachable", "unreachable",
		"connection refused", "unable to connect", "establish an smtp connection", "could not connect",
		"no route to host", "domain name not found", "not resolvable",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_BLOCKED, []string{
		"spam", "blocked", "blacklist", "blocklist", "black list", "block list", "listed in", "listed on",
		"dnsbl", "rbl", "uribl", "reputation", "content rejected", "virus", "malware", "junk", "bulk mail",
		"bulk email", "filtered", "content filter", "not accepting mail with", "banned",
		"rejected for policy reasons due to", "high probability", "suspicious", "scam", "phish", "unsolicited", "mass mail",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_POLICY, []string{
		"relay", "spf", "dkim", "dmarc", "authentication", "not permitted", "policy", "rcpthosts",
		"not allowed", "access denied", "sender address rejected", "sender rejected", "require", "refused",
		"not authorized", "unauthorized", "confirmation",
	}},
	{mailintakev1.BounceReason_BOUNCE_REASON_EXPIRED, []string{
		"expired", "retry timeout", "too long", "timed out", "timeout", "time out", "delayed", "not yet been delivered",
		"not been collected", "could not be delivered within", "maximum delivery attempts", "queue period",
		"in the queue", "delivery attempts", "will be retried", "still being retried", "postponed", "giving up on",
	}},
}

// reasonFromStatus classifies an enhanced status code (RFC 3463). It returns unspecified for
// codes that say too little (x.0.0, x.7.1 and the like): the words decide those.
func reasonFromStatus(status string) mailintakev1.BounceReason {
	if len(status) < 5 {
		return mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
	}
	switch status[2:] {
	case "1.1", "1.3", "1.6", "1.10", "2.1":
		return mailintakev1.BounceReason_BOUNCE_REASON_UNKNOWN_USER
	case "1.2", "4.4", "4.1":
		return mailintakev1.BounceReason_BOUNCE_REASON_HOST_UNKNOWN
	case "2.2":
		return mailintakev1.BounceReason_BOUNCE_REASON_MAILBOX_FULL
	case "2.3", "3.4":
		return mailintakev1.BounceReason_BOUNCE_REASON_MESSAGE_TOO_LARGE
	case "4.7":
		return mailintakev1.BounceReason_BOUNCE_REASON_EXPIRED
	case "7.0", "7.1", "0.0", "5.0", "3.0", "2.0", "1.0", "5.1", "5.2", "5.3", "5.4", "9.8":
		return mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
	}
	if strings.HasPrefix(status[2:], "7.") {
		return mailintakev1.BounceReason_BOUNCE_REASON_POLICY
	}
	return mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
}

// reasonFromWords classifies a diagnostic by its words; unspecified when none match.
func reasonFromWords(text string) mailintakev1.BounceReason {
	if text == "" {
		return mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
	}
	lower := strings.ToLower(text)
	for _, rw := range reasonWords {
		for _, w := range rw.words {
			if strings.Contains(lower, w) {
				return rw.reason
			}
		}
	}
	return mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
}

// classify sets a recipient's reason and permanence from its status, SMTP code and diagnostic,
// with the notice's own words (context) when the recipient's say nothing; delay is the
// notice's kind.
func classify(r *mailintakev1.BounceRecipient, context string, delay bool) {
	r.Reason = reasonFromStatus(r.Status)
	switch r.Reason {
	case mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED:
		r.Reason = reasonFromWords(r.Diagnostic)
	case mailintakev1.BounceReason_BOUNCE_REASON_POLICY:
		// Servers give x.7.x codes for every refusal: the words tell spam from an unknown user.
		if w := reasonFromWords(r.Diagnostic); w != mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED {
			r.Reason = w
		}
	}
	if r.Reason == mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED && len(r.Status) >= 3 && r.Status[2] == '7' {
		r.Reason = mailintakev1.BounceReason_BOUNCE_REASON_POLICY
	}
	if r.Reason == mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED {
		r.Reason = reasonFromWords(context)
	}
	if r.Reason == mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED {
		if delay {
			r.Reason = mailintakev1.BounceReason_BOUNCE_REASON_EXPIRED
		} else {
			r.Reason = mailintakev1.BounceReason_BOUNCE_REASON_OTHER
		}
	}
	switch {
	case delay || r.Action == "delayed":
		r.Permanent = false
	case r.Status != "":
		r.Permanent = r.Status[0] == '5'
	case r.SmtpCode != 0:
		r.Permanent = r.SmtpCode >= 500
	default:
		// A failure notice without codes: permanent unless it says the cause is passing.
		lower := strings.ToLower(r.Diagnostic + " " + context)
		r.Permanent = !strings.Contains(lower, "temporar") && !strings.Contains(lower, "transient")
	}
}
