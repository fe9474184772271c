package parse

import (
	"strings"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// feedbackReport reads a message/feedback-report part (RFC 5965 section 3.1): one block of
// header fields. The reported message's Message-ID is not among them; signals takes it from
// the report's third part (the message or its header).
func feedbackReport(body []byte) *mailintakev1.FeedbackReport {
	f := &mailintakev1.FeedbackReport{}
	for _, b := range dsnBlocks(body) {
		for _, fld := range b {
			v := strings.TrimSpace(fld.value)
			switch fld.name {
			case "feedback-type":
				if f.FeedbackType == "" {
					f.FeedbackType = strings.ToLower(v)
				}
			case "user-agent":
				if f.UserAgent == "" {
					f.UserAgent = v
				}
			case "original-mail-from":
				if f.OriginalMailFrom == "" {
					f.OriginalMailFrom = strings.Trim(v, "<> ")
				}
			case "original-rcpt-to", "removal-recipient":
				if a := strings.Trim(v, "<> "); a != "" {
					f.OriginalRcptTo = append(f.OriginalRcptTo, a)
				}
			case "source-ip":
				if f.SourceIp == "" {
					f.SourceIp = strings.Trim(v, "[] ")
				}
			case "reported-domain":
				if v != "" {
					f.ReportedDomains = append(f.ReportedDomains, v)
				}
			}
		}
	}
	return f
}
