// Package mailcopy is what the SQLite and the PostgreSQL store share of store.SyncStore's
// ClaimCopies: the key a mail is claimed under, the claims a call makes, and the answers it
// gives from the claims that won.
//
// A claim's key is the SHA-256 of the tenant, the Message-ID and the content fingerprint, each
// preceded by its length as a uvarint: 32 bytes whatever the header holds (a Message-ID can be
// long, or not valid UTF-8), so the key fits any index and any column type.
package mailcopy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// Key returns the key a copy's mail is claimed under.
func Key(c store.MailCopy) []byte {
	var buf [3*binary.MaxVarintLen64 + 256]byte
	b := buf[:0]
	for _, f := range []string{c.Tenant, c.MessageID, c.Fingerprint} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// Claim is one claim a call makes: a mail's key and the first copy of it in the call.
type Claim struct {
	Key       []byte
	MailboxID string
	ID        string
}

// Winner is the claim that holds a key: the first claimant's mailbox and message id.
type Winner struct {
	MailboxID string
	ID        string
}

// Plan returns the claims to make for copies, one per distinct key (its first copy in the
// call), sorted by key so that concurrent calls take their locks in the same order; and, for
// each copy, the index of its claim (-1: none, it has no Message-ID or fingerprint, or claimable
// says it cannot be stored).
func Plan(copies []store.MailCopy, claimable func(store.MailCopy) bool) (claims []Claim, index []int) {
	index = make([]int, len(copies))
	keys := make([][]byte, len(copies))
	seen := map[string]bool{}
	for i, c := range copies {
		index[i] = -1
		if c.MessageID == "" || c.Fingerprint == "" || (claimable != nil && !claimable(c)) {
			continue
		}
		keys[i] = Key(c)
		if !seen[string(keys[i])] {
			seen[string(keys[i])] = true
			claims = append(claims, Claim{Key: keys[i], MailboxID: c.MailboxID, ID: c.ID})
		}
	}
	slices.SortFunc(claims, func(a, b Claim) int { return bytes.Compare(a.Key, b.Key) })
	for i := range copies {
		if keys[i] != nil {
			index[i], _ = slices.BinarySearchFunc(claims, keys[i], func(cl Claim, k []byte) int { return bytes.Compare(cl.Key, k) })
		}
	}
	return claims, index
}

// Answers returns ClaimCopies's answer for each copy from the winners of its claims (winners[j]
// holds claims[j]'s key; a zero Winner, none found, answers ""): the winner's id when it is of
// another mailbox than the copy.
func Answers(copies []store.MailCopy, index []int, winners []Winner) []string {
	out := make([]string, len(copies))
	for i, c := range copies {
		if index[i] < 0 {
			continue
		}
		w := winners[index[i]]
		if w.ID != "" && w.ID != c.ID && w.MailboxID != c.MailboxID {
			out[i] = w.ID
		}
	}
	return out
}

// Pruner tells a store when to delete expired claims: at its first claim, then when
// store.CopyPruneInterval has passed since the last deletion by the claims' times, or when a
// claim's time is before the last deletion's (the clock went back, or a caller gave an older
// time). The zero Pruner is ready; it is safe for concurrent use.
type Pruner struct {
	mu   sync.Mutex
	last time.Time
	done bool
}

// Due reports whether a claim made at now should first delete the claims that expired.
func (p *Pruner) Due(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.done || now.Sub(p.last) >= store.CopyPruneInterval || now.Before(p.last)
}

// Pruned records that the claims expired at now were deleted (the deletion committed).
func (p *Pruner) Pruned(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.done = now, true
}
