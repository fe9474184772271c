package parse

import (
	"fmt"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// A message/partial part (RFC 2046 section 5.2.2) is one fragment of a message split over
// several mails; the others arrive as separate messages, so one mail alone cannot be put back
// together. The fragment is delivered as an attachment (its bytes as they are) and a problem
// with code "partial" names the fragment: its id, its number and, when given (the last fragment
// must give it), the total.

// partialProblem describes a message/partial part from its Content-Type parameters.
func partialProblem(where string, params map[string]string) *mailintakev1.ParseProblem {
	total := params["total"]
	if total == "" {
		total = "?"
	}
	number := params["number"]
	if number == "" {
		number = "?"
	}
	return problem(where, "partial", fmt.Sprintf("message/partial id=%q number=%s total=%s: a fragment of a message split over several mails; it cannot be reassembled alone and is delivered as an attachment", params["id"], number, total))
}
