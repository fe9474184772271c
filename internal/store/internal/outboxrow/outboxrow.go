// Package outboxrow is what the SQLite and the PostgreSQL store share of the outbox's rows: the
// JSON form of the columns that hold lists and structures (recipients, warnings, the last error,
// the server's answer, the bounce, the Sent copy), and the conversions of times to the stored Unix nanoseconds.
package outboxrow

import (
	"encoding/json"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Nanos returns t as stored: Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time returns a stored time: the zero time for 0.
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// List returns a list as its JSON text ("[]" for none). json.Marshal makes any string valid
// UTF-8 and escapes NUL, so the text suits PostgreSQL's text type too.
func List(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// ParseList reads List's text.
func ParseList(s string) ([]string, error) {
	var l []string
	if s == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	return l, nil
}

// storedError is the JSON form of a store.OutboundError; times as Unix nanoseconds, so they
// round-trip exactly.
type storedError struct {
	Kind        string                         `json:"kind,omitempty"`
	Step        string                         `json:"step,omitempty"`
	Code        int                            `json:"code,omitempty"`
	Enhanced    string                         `json:"enhanced,omitempty"`
	Text        string                         `json:"text,omitempty"`
	Explanation string                         `json:"explanation,omitempty"`
	Recipients  []store.OutboundRecipientError `json:"recipients,omitempty"`
	Time        int64                          `json:"time,omitempty"`
}

// Error returns an error as its JSON text; nil for none.
func Error(e *store.OutboundError) *string {
	if e == nil {
		return nil
	}
	b, _ := json.Marshal(storedError{Kind: e.Kind, Step: e.Step, Code: e.Code, Enhanced: e.Enhanced, Text: e.Text,
		Explanation: e.Explanation, Recipients: e.Recipients, Time: Nanos(e.Time)})
	s := string(b)
	return &s
}

// ParseError reads Error's text; nil for none.
func ParseError(s *string) (*store.OutboundError, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	var se storedError
	if err := json.Unmarshal([]byte(*s), &se); err != nil {
		return nil, err
	}
	return &store.OutboundError{Kind: se.Kind, Step: se.Step, Code: se.Code, Enhanced: se.Enhanced, Text: se.Text,
		Explanation: se.Explanation, Recipients: se.Recipients, Time: Time(se.Time)}, nil
}

// Result returns a result as its JSON text; nil for none.
func Result(r *store.OutboundResult) *string {
	if r == nil {
		return nil
	}
	b, _ := json.Marshal(r)
	s := string(b)
	return &s
}

// ParseResult reads Result's text; nil for none.
func ParseResult(s *string) (*store.OutboundResult, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	var r store.OutboundResult
	if err := json.Unmarshal([]byte(*s), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// storedBounce is the JSON form of a store.OutboundBounce; each recipient in protojson.
type storedBounce struct {
	MessageID  string            `json:"message_id,omitempty"`
	Time       int64             `json:"time,omitempty"`
	Recipients []json.RawMessage `json:"recipients,omitempty"`
}

// Bounce returns a bounce as its JSON text; nil for none.
func Bounce(b *store.OutboundBounce) *string {
	if b == nil {
		return nil
	}
	sb := storedBounce{MessageID: b.MessageID, Time: Nanos(b.Time)}
	for _, r := range b.Recipients {
		j, _ := protojson.Marshal(r)
		sb.Recipients = append(sb.Recipients, j)
	}
	j, _ := json.Marshal(sb)
	s := string(j)
	return &s
}

// ParseBounce reads Bounce's text; nil for none.
func ParseBounce(s *string) (*store.OutboundBounce, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	var sb storedBounce
	if err := json.Unmarshal([]byte(*s), &sb); err != nil {
		return nil, err
	}
	b := &store.OutboundBounce{MessageID: sb.MessageID, Time: Time(sb.Time)}
	for _, j := range sb.Recipients {
		r := &mailintakev1.BounceRecipient{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(j, r); err != nil {
			return nil, err
		}
		b.Recipients = append(b.Recipients, r)
	}
	return b, nil
}

// MergeBounce returns cur (nil: none yet) with what a failure report adds: its id and time when
// cur has none, and each recipient whose address cur does not list. changed is false when the
// report adds nothing (the same report delivered again).
func MergeBounce(cur *store.OutboundBounce, add store.OutboundBounce) (out *store.OutboundBounce, changed bool) {
	if cur == nil {
		c := add
		c.Recipients = nil
		cur, changed = &c, true
	}
	for _, r := range add.Recipients {
		known := false
		for _, k := range cur.Recipients {
			if strings.EqualFold(k.GetAddress(), r.GetAddress()) {
				known = true
				break
			}
		}
		if !known {
			cur.Recipients = append(cur.Recipients, r)
			changed = true
		}
	}
	return cur, changed
}

type storedSentCopy struct {
	Folder string `json:"folder,omitempty"`
	Saved  bool   `json:"saved,omitempty"`
	Error  string `json:"error,omitempty"`
	Time   int64  `json:"time,omitempty"`
}

// SentCopy returns a Sent copy's outcome as its JSON text; nil for none.
func SentCopy(c *store.OutboundSentCopy) *string {
	if c == nil {
		return nil
	}
	j, _ := json.Marshal(storedSentCopy{Folder: c.Folder, Saved: c.Saved, Error: c.Error, Time: Nanos(c.Time)})
	s := string(j)
	return &s
}

// ParseSentCopy reads SentCopy's text; nil for none.
func ParseSentCopy(s *string) (*store.OutboundSentCopy, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	var sc storedSentCopy
	if err := json.Unmarshal([]byte(*s), &sc); err != nil {
		return nil, err
	}
	return &store.OutboundSentCopy{Folder: sc.Folder, Saved: sc.Saved, Error: sc.Error, Time: Time(sc.Time)}, nil
}
