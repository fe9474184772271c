package store

import (
	"context"
	"time"
)

// SyncState is a mailbox's durable delivery checkpoint.
type SyncState struct {
	MailboxID   string
	UIDValidity uint32
	// AckedThrough: every message with a UID up to this one is done (acknowledged, quarantined,
	// or present before a START_FROM_NEW mailbox was first synced).
	AckedThrough uint32
	// Baseline is the folder's UIDNEXT at the first sync: messages below it are backfill.
	Baseline uint32
	// ResyncBelow, after a UIDVALIDITY change, is the UIDNEXT of the new folder: messages below it
	// are compared with the hashes of acknowledged messages, so none is delivered twice.
	ResyncBelow uint32
	UpdateTime  time.Time
}

// Ack is an acknowledged message. It stays until after_ack was applied and the checkpoint passed
// it; its hash stays longer to recognise the message after a UIDVALIDITY change.
type Ack struct {
	UIDValidity uint32
	UID         uint32
	SHA256      string
	AckTime     time.Time
	Applied     bool // after_ack was applied on the mail server
}

// QuarantineState says what happens to a quarantined message next.
type QuarantineState string

// Quarantine states.
const (
	QuarantineHeld   QuarantineState = "held"   // waiting for an admin
	QuarantineReplay QuarantineState = "replay" // to be delivered again
)

// Quarantined is a message that could not be delivered as a parsed message.
type Quarantined struct {
	ID          int64
	MailboxID   string
	UIDValidity uint32
	UID         uint32
	Reason      string
	Size        int64
	Headers     string // the message's header section, when it could be read
	State       QuarantineState
	CreateTime  time.Time
}

// Event is an entry of a mailbox's event log.
type Event struct {
	ID        int64
	MailboxID string
	Time      time.Time
	Kind      string // connect, auth, error, deliver, ack, quarantine, resync, config
	Message   string
	// Count is how many times it happened (1 when it is new); Time is the last time and
	// FirstTime the first.
	Count     int
	FirstTime time.Time
}

// The event log of a mailbox is bounded: entries beyond the newest MaxEventsPerMailbox and
// entries last seen more than EventRetention ago are dropped at every AddEvent. An event with
// the same kind and message as one seen within EventFoldWindow is folded into it: its count
// goes up, it takes a new id (it is the newest again) and its first time stays.
const (
	MaxEventsPerMailbox = 500
	EventRetention      = 30 * 24 * time.Hour
	EventFoldWindow     = 24 * time.Hour
)

// MailCopy is one delivery of a mail into one mailbox, about to be offered: what ClaimCopies
// records. Tenant, MessageID and Fingerprint name the mail; MailboxID and ID the delivery.
type MailCopy struct {
	Tenant string
	// MessageID is the mail's Message-ID header (Envelope.message_id).
	MessageID string
	// Fingerprint is the message's Message.content_fingerprint: its content without the header
	// fields each delivery adds, so two deliveries of one mail have the same.
	Fingerprint string
	MailboxID   string
	// ID is the id the message is delivered under (Message.id: mailbox:uidvalidity:uid), the
	// same on every replica and at every redelivery.
	ID string
}

// A claim of ClaimCopies counts for CopyRetention after it was made: a copy of the mail claimed
// later than that is first again. Expired claims are deleted at most once per
// CopyPruneInterval by each store (each process), in the call that finds the interval passed.
const (
	CopyRetention     = 30 * 24 * time.Hour
	CopyPruneInterval = time.Hour
)

// SyncStore is the delivery side of the store.
//
// Durability: what a call wrote survives a crash of the process in every implementation. A
// power failure of the host must not lose the acknowledgements (RecordAcks), a quarantined
// message, a POP3 mailbox's unique-ids or a checkpoint's first save or resync; an
// implementation may let it roll back, in commit order, a checkpoint that only moved
// acked_through forward, MarkApplied, AddEvent and ClaimCopies, which the delivery promise
// does not depend on (the SQLite store does, to spare an fsync each per sync round: see its
// relaxed.go).
type SyncStore interface {
	// SyncState returns the checkpoint, or nil when the mailbox was never synced.
	SyncState(ctx context.Context, mailboxID string) (*SyncState, error)
	// SaveSyncState writes the checkpoint.
	SaveSyncState(ctx context.Context, s *SyncState) error
	// RecordAcks stores the acknowledgements of one or more mailboxes (keyed by mailbox id)
	// durably, all of them or, on error, none (idempotent).
	RecordAcks(ctx context.Context, acks map[string][]Ack) error
	// Acks returns the acknowledgements of a UIDVALIDITY above a UID.
	Acks(ctx context.Context, mailboxID string, uidValidity, aboveUID uint32) ([]Ack, error)
	// UnappliedAcks returns acknowledgements whose after_ack was not applied yet.
	UnappliedAcks(ctx context.Context, mailboxID string) ([]Ack, error)
	// MarkApplied records that after_ack was applied.
	MarkApplied(ctx context.Context, mailboxID string, uidValidity uint32, uids []uint32) error
	// AckedHash reports whether a message with this SHA-256 was acknowledged.
	AckedHash(ctx context.Context, mailboxID, sha256 string) (bool, error)
	// PruneAcks forgets applied acknowledgements at or below the checkpoint that are older than
	// keepHashesUntil, and those of other UIDVALIDITYs older than it.
	PruneAcks(ctx context.Context, mailboxID string, uidValidity, ackedThrough uint32, olderThan time.Time) error

	// Quarantine keeps a message (replacing an entry for the same UID).
	Quarantine(ctx context.Context, q *Quarantined) error
	// ListQuarantine returns a mailbox's quarantined messages, oldest first.
	ListQuarantine(ctx context.Context, mailboxID string) ([]*Quarantined, error)
	// GetQuarantined returns one entry. ErrNotFound if missing.
	GetQuarantined(ctx context.Context, id int64) (*Quarantined, error)
	// SetQuarantineState changes an entry's state. ErrNotFound if missing.
	SetQuarantineState(ctx context.Context, id int64, st QuarantineState) error
	// DeleteQuarantined removes an entry. ErrNotFound if missing.
	DeleteQuarantined(ctx context.Context, id int64) error

	// AddEvent appends to a mailbox's event log, folding a repeat of a recent entry into it and
	// pruning by age and count (see MaxEventsPerMailbox).
	AddEvent(ctx context.Context, e Event) error
	// ListEvents returns a mailbox's events newest first, with ids below beforeID (0: from the newest).
	ListEvents(ctx context.Context, mailboxID string, beforeID int64, limit int) ([]Event, error)

	// ClaimCopies records, for each copy, the first delivery of its mail in its tenant — keyed by
	// (Tenant, MessageID, Fingerprint), the first claim within CopyRetention wins — and answers,
	// in the order of copies, the ID of that first claimant when it is a message of another
	// mailbox: this copy is a duplicate of it (Message.duplicate_of). The answer is "" when
	// this copy is the first, when the first claimant is of the same mailbox (a redelivery of
	// the same message, or the same mail under a new UIDVALIDITY), or when MessageID or
	// Fingerprint is empty (no claim is made). A claim never changes hands within its
	// retention, so the answer for a copy is the same at every redelivery, on every replica
	// (except after a power failure of the host that rolled back claims: see the Durability note).
	// Within one call, the earlier copy of a mail is the first.
	//
	// It is atomic under concurrent calls from any replica: one claim of a mail wins, and every
	// call answers it. now is the claim's time (zero: the current time); claims older than
	// CopyRetention before it no longer count. Claims belong to the tenant's mail, not to a
	// mailbox: a mailbox's deletion leaves them (they expire), and the call is not fenced by a
	// lease (every replica delivers a message under the same ID).
	ClaimCopies(ctx context.Context, now time.Time, copies []MailCopy) ([]string, error)

	// MapUIDLs is a POP3 mailbox's checkpoint of unique-ids (UIDL). It records that the
	// maildrop lists uidls now and answers each one's UID in the mailbox: the UID it was given
	// when first listed, or, for a unique-id never seen (or forgotten), a new one above every
	// UID the mailbox had, given in the order of uidls. A UID names its unique-id for good, so
	// the message's id (mailbox:uidvalidity:uid, under POP3UIDValidity) is stable across
	// restarts, and acks, quarantine and the checkpoint's acked_through work as for IMAP.
	// Unique-ids no longer listed are marked gone at now (once) and forgotten when they have
	// been gone since before forgetGoneBefore, except the mailbox's highest UID, which is kept
	// so that no UID is given twice. It is one transaction, fenced under a lease.
	MapUIDLs(ctx context.Context, mailboxID string, uidls []string, now, forgetGoneBefore time.Time) (map[string]uint32, error)
	// UIDLOf returns the unique-id a POP3 mailbox's UID names (MapUIDLs); ErrNotFound when
	// none does (never given, or forgotten).
	UIDLOf(ctx context.Context, mailboxID string, uid uint32) (string, error)
}

// POP3UIDValidity is the UIDVALIDITY of every POP3 mailbox's checkpoint: the UIDs MapUIDLs
// gives never name another message, so it never changes.
const POP3UIDValidity = 1

// UIDLRetention is how long a POP3 mailbox's checkpoint remembers a unique-id after the
// maildrop stopped listing it (MapUIDLs' forgetGoneBefore): a message restored within that
// time is recognised, not delivered again.
const UIDLRetention = 14 * 24 * time.Hour

// UIDLState is what a store keeps of one unique-id of a POP3 mailbox (MapUIDLs).
type UIDLState struct {
	UID  uint32
	Gone bool
}

// UIDLPlan is what MapUIDLs writes, computed by PlanUIDLs the same way in every store.
type UIDLPlan struct {
	// UIDs answers each listed unique-id's UID.
	UIDs map[string]uint32
	// Insert are the unique-ids seen for the first time, Back those listed again after they
	// were gone, Gone those no longer listed.
	Insert, Back, Gone []string
}

// PlanUIDLs computes MapUIDLs' changes from what a store keeps (known, and top, its highest UID)
// and the unique-ids listed now.
func PlanUIDLs(known map[string]UIDLState, top uint32, uidls []string) UIDLPlan {
	p := UIDLPlan{UIDs: make(map[string]uint32, len(uidls))}
	for _, u := range uidls {
		if _, dup := p.UIDs[u]; dup {
			continue
		}
		st, ok := known[u]
		if !ok {
			top++
			p.UIDs[u] = top
			p.Insert = append(p.Insert, u)
			continue
		}
		p.UIDs[u] = st.UID
		if st.Gone {
			p.Back = append(p.Back, u)
		}
	}
	for u, st := range known {
		if _, listed := p.UIDs[u]; !listed && !st.Gone {
			p.Gone = append(p.Gone, u)
		}
	}
	return p
}
