package smtpsend

import (
	"fmt"
	"strings"
)

// Plain words for the replies submission servers give, Exchange Online's first (the codes a
// service desk's replies meet in the wild), then by class, then generic.
const (
	explainAuthDisabled = "SMTP AUTH (sending with a login) is turned off for this mailbox or for the whole Microsoft 365 tenant, " +
		"or blocked by security defaults or a Conditional Access policy against legacy authentication; no token or password can send until it is on. " +
		"An Exchange admin turns it on for the mailbox with `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false` " +
		"(Microsoft 365 admin center: the user's Mail tab, Manage email apps, Authenticated SMTP), or for the tenant with " +
		"`Set-TransportConfig -SmtpClientAuthenticationDisabled $false` (Settings, Org settings, Mail); the change can take an hour"
	explainAuthRefused = "the server refused the login. With an OAuth token this is usually a token for another account than the login user " +
		"(sign in again as the mailbox's own user), a shared mailbox used as the login (log in as a user who has access to it and send " +
		"from the shared address as the From / send-as address instead), or a token without the SMTP.Send permission (add it to the app " +
		"registration and consent again). With a password: a wrong user name or password, or password logins turned off"
	explainBasicRemoved = "the server no longer accepts passwords (Basic authentication) for sending: switch the mailbox to OAuth (the o365 provider)"
	explainAuthRequired = "the server wants a login before it accepts mail and this connection has none: give the mailbox's submission credentials"
	explainSendAs       = "the login's account may not send as the From address: grant it Send As on that mailbox (Exchange: " +
		"`Add-RecipientPermission -Identity <from address> -Trustee <login user> -AccessRights SendAs`, or Send on Behalf with a Sender), " +
		"or send from the login's own address; permissions can take an hour to apply"
	explainQuota        = "the mailbox reached its daily sending limit (Exchange Online: 10,000 recipients a day); sending works again within 24 hours"
	explainTooManyConns = "too many connections or submissions at once for this mailbox (Exchange Online allows about three): " +
		"it is sent again later; lower the number of sends this mailbox runs at the same time"
	explainClosing     = "the server is closing the connection (overloaded, or shutting down): it is sent again later"
	explainAuthTemp    = "a temporary failure of the login at the server: it is tried again later"
	explainTooLarge    = "the message is larger than the server accepts: send fewer or smaller attachments (or a link to the file)"
	explainTenantBlock = "Microsoft has blocked the tenant or this sender from sending (suspicious sending, or too many unverified domains): " +
		"the tenant's admin must check the Restricted entities / Microsoft support; nothing will be sent until then"
	explainNeedsFix = "the server refused it for good; sending the same again changes nothing: read its words, fix the message or the mailbox's settings, then send again"
)

// explain returns plain words for a server's reply at a step.
func explain(step StepKind, code int, enh, text string) string {
	lower := strings.ToLower(text)
	switch {
	case enh == "5.7.139" || strings.Contains(lower, "smtpclientauthentication is disabled"):
		return explainAuthDisabled
	case enh == "5.7.30" || strings.Contains(lower, "basic authentication is not supported"):
		return explainBasicRemoved
	case enh == "5.2.252" || enh == "5.7.60" || strings.Contains(lower, "sendasdenied") || strings.Contains(lower, "send as this sender"):
		return explainSendAs
	case strings.Contains(lower, "quotaexceeded") || strings.Contains(lower, "submissionquota"):
		return explainQuota
	case enh == "5.7.708" || enh == "5.7.705" || enh == "5.7.750" || enh == "5.7.703":
		return explainTenantBlock
	case code == 432 || enh == "4.3.2":
		return explainTooManyConns
	case code == 421:
		return explainClosing
	case step == StepAuth && enh == "5.7.3":
		return explainAuthRefused
	case step == StepAuth && code == 454:
		return explainAuthTemp
	case step == StepAuth && code == 535:
		return "the server refused the login: check the user name and password, or the token (expired, revoked, or for another account)"
	case code == 530 || enh == "5.7.57" || enh == "5.7.0" && strings.Contains(lower, "authenticat"):
		return explainAuthRequired
	case code == 552 || enh == "5.3.4" || enh == "5.2.3":
		return explainTooLarge
	case strings.HasPrefix(enh, "5.1."), strings.HasPrefix(enh, "4.1."):
		return explainAddress(step, enh)
	case enh == "4.5.3" || enh == "5.5.3" || code == 452 && step == StepRcpt:
		return "too many recipients for one message at this server: send to fewer at once"
	case enh == "5.7.1":
		return "the server's policy refuses this message (relaying denied: the login may not send from this address or to these recipients, or the content was refused)"
	case strings.HasPrefix(enh, "5.6."):
		return "the server refused the message's format or content: " + explainNeedsFix
	case code >= 400 && code < 500:
		return fmt.Sprintf("the server refused it for now at %s; it is sent again later", step)
	}
	return explainNeedsFix
}

// explainAddress words the X.1.Y codes (RFC 3463: addressing).
func explainAddress(step StepKind, enh string) string {
	temp := strings.HasPrefix(enh, "4.")
	var s string
	switch enh[2:] {
	case "1.1":
		s = "the recipient's mailbox does not exist: check the address's spelling"
	case "1.2":
		s = "the recipient's domain does not exist or takes no mail: check the part after the @"
	case "1.3":
		s = "the address is not a valid email address"
	case "1.6":
		s = "the recipient's mailbox has moved and has no forwarding address"
	case "1.10":
		s = "the recipient's domain says it takes no mail (null MX)"
	case "1.7", "1.8":
		s = "the server refused the sender address (MAIL FROM): the login may not send from it, or it is malformed"
	default:
		if step == StepMail {
			s = "the server refused the sender address (MAIL FROM)"
		} else {
			s = "the server refused the recipient's address"
		}
	}
	if temp {
		s += " (for now: it is tried again later)"
	}
	return s
}

// explainAuth words a refused login, saying what the token's age means.
func explainAuth(ae *AuthError) string {
	s := explain(StepAuth, ae.Code, ae.Enhanced, ae.Text)
	if !ae.TokenLogin() || ae.Code < 500 {
		return s
	}
	switch {
	case ae.Enhanced == "5.7.139" || ae.Enhanced == "5.7.30":
	case ae.Fresh:
		s += ". The token was issued just now, so it has not expired: the account, its permissions or the mailbox's settings are the cause"
	default:
		s += ". The token came from the cache and may have been revoked: one more try with a freshly issued token tells"
	}
	return s
}

// explainRecipients words a send stopped by refused recipients.
func explainRecipients(refused []RecipientError, total int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the server refused %d of %d recipients, so nothing was sent (a partial send would leave some without the message): ", len(refused), total)
	for i, r := range refused {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", r, explain(StepRcpt, r.Code, r.Enhanced, r.Text))
	}
	b.WriteString(". Correct or remove them and send again")
	return b.String()
}

// explainUnknown words a send whose fate the server never told.
func explainUnknown(t Target, cause string) string {
	return fmt.Sprintf("the whole message was sent to %s, then %s before the server answered: it may or may not have been accepted. "+
		"It is not sent again automatically, so no one gets it twice: look for it in the mailbox's Sent folder (or ask a recipient) "+
		"and send it again deliberately if it is missing", t.Addr(), cause)
}
