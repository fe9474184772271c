package smtpsend

import "regexp"

// queueIDPatterns find the queue id in the reply to the final dot, as common servers word it.
var queueIDPatterns = []*regexp.Regexp{
	// Postfix, Dovecot's relay, go-smtp servers: "2.0.0 Ok: queued as 4Xyz123".
	regexp.MustCompile(`(?i)\bqueued as <?([A-Za-z0-9._@-]+)>?`),
	// Exchange Online: "2.6.0 <msgid> [InternalId=123, Hostname=…] … Queued mail for delivery".
	regexp.MustCompile(`(?i)\bInternalId=([A-Za-z0-9]+)`),
	// Exim: "OK id=1qAbCd-0001Xy-Z9".
	regexp.MustCompile(`(?i)\bid=([A-Za-z0-9._-]+)`),
	// Gmail: "OK  1717171717 a1-20020a05…sm123 - gsmtp".
	regexp.MustCompile(`(?i)^OK\s+\d+\s+(\S+)\s+-\s+gsmtp`),
	// Sendmail: "x8ABCDEF123456 Message accepted for delivery".
	regexp.MustCompile(`(?i)^([A-Za-z0-9]+) Message accepted`),
}

// QueueID returns the server's queue id in the text of its reply to the final dot (without the
// codes), "" when the text names none in a form known here.
func QueueID(text string) string {
	for _, re := range queueIDPatterns {
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	return ""
}
