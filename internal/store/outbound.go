package store

import (
	"context"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// OutboundState is where an outbound message is (mailintake.v1.OutboundState).
type OutboundState string

// Outbound states. A message goes QUEUED → SENDING → SENT, FAILED or UNKNOWN; a temporary
// failure before the end of the message takes it from SENDING back to QUEUED. A delivery
// failure report (BounceOutbound) takes a SENT or UNKNOWN message to BOUNCED. SENT, FAILED,
// UNKNOWN and BOUNCED are final: nothing sends the message again on its own.
const (
	OutboundQueued  OutboundState = "queued"
	OutboundSending OutboundState = "sending"
	OutboundSent    OutboundState = "sent"
	OutboundFailed  OutboundState = "failed"
	OutboundUnknown OutboundState = "unknown"
	OutboundBounced OutboundState = "bounced"
)

// Final reports whether the state is one the sender never leaves.
func (s OutboundState) Final() bool {
	return s == OutboundSent || s == OutboundFailed || s == OutboundUnknown || s == OutboundBounced
}

// Outbound is a message sent, or to be sent, as a mailbox: the outbox's row. Raw, the composed
// message, is stored as it is: message bodies are not secrets in this project's model (the
// inbound side hands them to the consumer in the clear, and the quarantine keeps headers in the
// clear); credentials never appear in it.
type Outbound struct {
	ID        string
	MailboxID string
	Tenant    string
	// IdempotencyKey is the caller's key, unique per mailbox; RequestHash is the SHA-256 of the
	// request's content, which tells a retried call (same hash) from another message under the
	// same key.
	IdempotencyKey string
	RequestHash    []byte
	State          OutboundState
	// MessageID is the Message-ID header without angle brackets; InReplyTo the Message-ID of
	// the message it answers ("" when it is not a reply).
	MessageID string
	InReplyTo string
	// From is the envelope sender (MAIL FROM); Recipients every envelope recipient.
	From       string
	Recipients []string
	Subject    string
	// Size is len(Raw); Raw is filled only by GetOutbound with raw set.
	Size int64
	Raw  []byte
	// Warnings say what composing changed or left out.
	Warnings []string
	Attempts int
	// NextAttemptTime is when a QUEUED message is due.
	NextAttemptTime time.Time
	// Error is why the last attempt failed; nil when none did (or after it was sent).
	Error *OutboundError
	// Result is the server's answer once SENT.
	Result     *OutboundResult
	CreateTime time.Time
	UpdateTime time.Time
	SentTime   time.Time
	// Bounce is the delivery failure reported for it (state BOUNCED); nil when none came.
	Bounce *OutboundBounce
	// SentCopy is the copy saved in the mailbox's Sent folder; nil when none was attempted.
	SentCopy *OutboundSentCopy
}

// OutboundBounce is what the delivery failure reports of an outbound message said.
type OutboundBounce struct {
	// MessageID is the delivered report's id (Message.id) that made it BOUNCED: the first.
	MessageID string
	// Time is when the first report was delivered.
	Time time.Time
	// Recipients are the failed recipients of every report, each address once (the first
	// report's entry for it).
	Recipients []*mailintakev1.BounceRecipient
}

// OutboundSentCopy is the outcome of saving a copy of a sent message in the mailbox's Sent
// folder (mailintake.v1.SentCopy).
type OutboundSentCopy struct {
	Folder string
	Saved  bool
	Error  string
	Time   time.Time
}

// BounceReport is a delivery report delivered from a mailbox of Tenant, as BounceOutbound
// matches it with an outbound message.
type BounceReport struct {
	Tenant string
	// EnvelopeID is the report's Original-Envelope-Id (the outbound id, when the report is
	// about a message this server sent); MessageID the Message-ID of the message it returns.
	// Either may be empty; the envelope id is tried first.
	EnvelopeID string
	MessageID  string
	// Failure is set for a failure report; a delay warning is only matched.
	Failure bool
	// Bounce is what a failure report records: the report's id and time, and the recipients
	// that failed.
	Bounce OutboundBounce
}

// OutboundError is a failed attempt (mailintake.v1.OutboundError).
type OutboundError struct {
	Kind        string // "temporary", "permanent" or "unknown"
	Step        string
	Code        int
	Enhanced    string
	Text        string
	Explanation string
	Recipients  []OutboundRecipientError
	Time        time.Time
}

// OutboundRecipientError is a recipient refused at RCPT TO.
type OutboundRecipientError struct {
	Address  string
	Code     int
	Enhanced string
	Text     string
}

// OutboundResult is the submission server's acceptance of a message.
type OutboundResult struct {
	QueueID  string
	Response string // the reply to the final dot, e.g. "250 2.0.0 OK queued as 4Bc1x2"
	DSN      bool   // delivery status notifications were asked for
}

// OutboundQuery selects outbound messages for ListOutbound.
type OutboundQuery struct {
	Tenant    string        // only this tenant; empty for all
	MailboxID string        // only this mailbox; empty for all
	State     OutboundState // only this state; empty for all
	AfterID   string        // only ids greater than this (pagination)
	Limit     int           // at most this many; 0 for all
}

// OutboundUpdate is a change of an outbound message's state (TransitionOutbound). Every field
// is written as given: the sender states the whole outcome of each step.
type OutboundUpdate struct {
	State           OutboundState
	Attempts        int
	NextAttemptTime time.Time
	Error           *OutboundError // nil clears it
	Result          *OutboundResult
	UpdateTime      time.Time
	SentTime        time.Time
}

// OutboundWork is what the outbox has for one mailbox: whether a QUEUED message is due, whether
// a message is SENDING, and when the earliest QUEUED one that is not due yet will be.
type OutboundWork struct {
	MailboxID string
	Due       bool
	Sending   bool
	NextDue   time.Time // zero: none waits for later
}

// OutboundHealth is how a mailbox's sending goes, for its status: what waits for another
// attempt after a failure, and what ended without being sent lately.
type OutboundHealth struct {
	// Retrying counts the QUEUED messages whose last attempt failed.
	Retrying int
	// Failed and Unknown count the messages that became FAILED or UNKNOWN at or after the time
	// OutboundHealth was asked about.
	Failed, Unknown int
	// LastError is the error of the latest of those messages to change, with its state; nil
	// when there are none.
	LastError      *OutboundError
	LastErrorState OutboundState
}

// OutboundRetention is how long an outbound message in a final state (SENT, FAILED, UNKNOWN) is
// kept after its last change, with its raw bytes and its idempotency key; PruneOutbound deletes it
// then.
const OutboundRetention = 30 * 24 * time.Hour

// OutboxStore is the durable outbox: the outbound messages of every mailbox.
type OutboxStore interface {
	// CreateOutbound queues a new outbound message (o.Raw is stored; o.Size is set from it). When
	// the mailbox already has one with the same idempotency key, nothing is written and that one
	// is returned with created false (the caller compares RequestHash). An unknown mailbox is
	// ErrNotFound.
	CreateOutbound(ctx context.Context, o *Outbound) (existing *Outbound, created bool, err error)
	// OutboundByKey returns a mailbox's outbound message with an idempotency key (without its raw
	// bytes). ErrNotFound if there is none.
	OutboundByKey(ctx context.Context, mailboxID, key string) (*Outbound, error)
	// GetOutbound returns an outbound message, with its raw bytes when raw is set. ErrNotFound if
	// missing.
	GetOutbound(ctx context.Context, id string, raw bool) (*Outbound, error)
	// ListOutbound returns outbound messages ordered by id (without their raw bytes).
	ListOutbound(ctx context.Context, q OutboundQuery) ([]*Outbound, error)
	// DueOutbound returns a mailbox's QUEUED messages whose next attempt is at or before now,
	// oldest first, at most limit (without their raw bytes).
	DueOutbound(ctx context.Context, mailboxID string, now time.Time, limit int) ([]*Outbound, error)
	// OutboundHealth returns how the mailbox's sending goes (see OutboundHealth), counting the
	// FAILED and UNKNOWN messages whose last change is at or after since. It reads only the
	// mailbox's pending and failed rows, not every message it sent.
	OutboundHealth(ctx context.Context, mailboxID string, since time.Time) (OutboundHealth, error)
	// OutboxWork returns, for every mailbox with a QUEUED or SENDING message, what is there
	// (see OutboundWork), ordered by mailbox id.
	OutboxWork(ctx context.Context, now time.Time) ([]OutboundWork, error)
	// TransitionOutbound changes the outbound message cur (as the caller read it: its ID,
	// MailboxID, State and Attempts) to u: a compare-and-set, so a message is taken for sending
	// once however many senders race. ErrConflict when its state or attempts changed meanwhile,
	// ErrNotFound when it is gone. Fenced by the mailbox's lease when ctx carries one
	// (store.WithLease).
	TransitionOutbound(ctx context.Context, cur *Outbound, u OutboundUpdate) error
	// InterruptOutbound marks every SENDING message of the mailbox UNKNOWN with the error e (its
	// Time is the update time), and returns their ids: a sender that starts on a mailbox calls it
	// before it sends anything, so a message a crashed or replaced sender was sending is never
	// sent again. Fenced by the mailbox's lease when ctx carries one.
	InterruptOutbound(ctx context.Context, mailboxID string, e OutboundError) ([]string, error)
	// BounceOutbound finds the outbound message a delivery report delivered from mailboxID is
	// about: of the report's tenant, in state SENT, UNKNOWN or BOUNCED, the one whose id is
	// r.EnvelopeID, else the latest whose Message-ID is r.MessageID. For a failure report it
	// records r.Bounce: a SENT or UNKNOWN message becomes BOUNCED, a BOUNCED one gains the
	// recipients it did not list yet (a report delivered again changes nothing). It returns the
	// message's id, "" when none matches. Fenced by mailboxID's lease (the session that
	// delivered the report) when ctx carries one.
	BounceOutbound(ctx context.Context, mailboxID string, r BounceReport) (string, error)
	// RecordSentCopy records the outcome of saving a sent message's copy in the Sent folder,
	// without changing its state. ErrNotFound when it is gone. Fenced by the mailbox's lease
	// when ctx carries one.
	RecordSentCopy(ctx context.Context, o *Outbound, c OutboundSentCopy) error
	// PruneOutbound deletes the outbound messages in a final state last changed before before, and
	// returns how many.
	PruneOutbound(ctx context.Context, before time.Time) (int, error)
}
