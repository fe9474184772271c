package smtpsend

import (
	"strings"
	"testing"
)

func TestQueueID(t *testing.T) {
	for text, want := range map[string]string{
		"Ok: queued as 4Xyz12AbC": "4Xyz12AbC",
		"<AM0PR01MB1234@eurprd01.prod.outlook.com> [InternalId=1234567890, Hostname=AM0PR01MB1234.eurprd01.prod.outlook.com] 2345 bytes in 0.123, 18.6 KB/sec Queued mail for delivery": "1234567890",
		"OK id=1qAbCd-0001Xy-Z9": "1qAbCd-0001Xy-Z9",
		"OK  1717171717 d9443c01a7336-1f6a1b2c3d4sm1234567pjh.123 - gsmtp": "d9443c01a7336-1f6a1b2c3d4sm1234567pjh.123",
		"x8ABCDEF123456 Message accepted for delivery":                     "x8ABCDEF123456",
		"Ok": "",
	} {
		if got := QueueID(text); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestExplanations(t *testing.T) {
	for _, c := range []struct {
		step      StepKind
		code      int
		enh, text string
		says      string
	}{
		{StepAuth, 535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.", "Set-TransportConfig -SmtpClientAuthenticationDisabled $false"},
		{StepAuth, 535, "5.7.3", "Authentication unsuccessful", "SMTP.Send"},
		{StepAuth, 535, "5.7.8", "Username and Password not accepted", "check the user name and password"},
		{StepAuth, 454, "4.7.0", "Temporary authentication failure", "temporary failure of the login"},
		{StepEndOfData, 554, "5.2.252", "SendAsDenied; x not allowed to send as y", "Send As"},
		{StepMail, 550, "5.7.60", "SMTP; Client does not have permissions to send as this sender", "Send As"},
		{StepMail, 432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded", "about three"},
		{StepRcpt, 550, "5.1.1", "User unknown", "does not exist"},
		{StepRcpt, 550, "5.1.2", "Host unknown", "domain does not exist"},
		{StepRcpt, 553, "5.1.3", "Bad address syntax", "not a valid email address"},
		{StepRcpt, 550, "5.1.10", "Recipient address rejected: null MX", "null MX"},
		{StepRcpt, 450, "4.1.1", "Recipient address rejected: try later", "for now"},
		{StepEndOfData, 552, "5.3.4", "Message size exceeds fixed maximum message size", "larger than the server accepts"},
		{StepEndOfData, 552, "", "Message too big", "larger than the server accepts"},
		{StepMail, 421, "4.7.0", "closing", "closing the connection"},
		{StepMail, 550, "5.7.30", "Basic authentication is not supported for Client Submission.", "OAuth"},
		{StepMail, 451, "4.4.0", "whatever", "sent again later"},
		{StepMail, 550, "5.9.9", "whatever", "refused it for good"},
	} {
		got := explain(c.step, c.code, c.enh, c.text)
		if !strings.Contains(got, c.says) {
			t.Errorf("%d %s at %s: %q does not say %q", c.code, c.enh, c.step, got, c.says)
		}
	}
}

func TestErrorRendering(t *testing.T) {
	e := &Error{Kind: Permanent, Step: StepAuth, Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful", Explanation: "SMTP AUTH is off",
		Err: &AuthError{Mechanism: MechXOAuth2, Identity: "a@example.com", Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful", Fresh: true}}
	if got := e.Error(); got != "smtp AUTH (permanent): 535 5.7.139 Authentication unsuccessful: SMTP AUTH is off" {
		t.Errorf("Error() = %q", got)
	}
	if got := e.Err.Error(); got != "the SMTP server refused the XOAUTH2 login of a@example.com: 535 5.7.139 Authentication unsuccessful (with a token issued just now)" {
		t.Errorf("AuthError.Error() = %q", got)
	}
	if KindOf(nil) != 0 || KindOf(e) != Permanent || KindOf(errBroken) != Temporary {
		t.Error("KindOf")
	}
	for k, s := range map[Kind]string{Temporary: "temporary", Permanent: "permanent", Unknown: "unknown"} {
		if k.String() != s {
			t.Errorf("%d: %s", k, k)
		}
	}
}
