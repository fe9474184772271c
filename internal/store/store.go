// Package store defines the server's persistence: mailboxes with their encrypted secrets,
// provider state, API tokens, the delivery checkpoints (sync.go) and the outbox of mail sent as
// the mailboxes (outbound.go). The embedded implementation is in store/sqlite; a PostgreSQL
// implementation for several replicas satisfies the same [Store] interface.
//
// Implementations encrypt secrets and provider state with a secrets.Box before they reach the
// disk; callers hand them plaintext and get plaintext back.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/mailintake/mailintake/internal/secrets"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Errors returned by every implementation.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrUnavailable wraps a failure of the storage itself (disk full, read-only, I/O error,
	// locked): nothing was written, and the same call can succeed once the storage recovers.
	// Its text says what the admin must fix.
	ErrUnavailable = errors.New("the store is unavailable")
	// ErrKeyMismatch is returned by VerifyKey when the store's secret key is not the one the
	// database was first used with: nothing it sealed could be read.
	ErrKeyMismatch = errors.New("the secret key does not match the one this database was set up with")
)

// Mailbox is a stored mailbox: its definition and its secrets.
type Mailbox struct {
	// Spec is the mailbox as the API describes it. Its auth_secrets and auth_secrets_set fields
	// are never stored: secrets live in Secrets.
	Spec *mailintakev1.Mailbox
	// Secrets are the provider's secret fields, stored encrypted.
	Secrets map[string]secrets.Secret
}

// MailboxQuery selects mailboxes for ListMailboxes.
type MailboxQuery struct {
	Tenant  string // only this tenant; empty for all
	AfterID string // only ids greater than this (pagination)
	Limit   int    // at most this many; 0 for all
}

// Token is a stored API token. Its value is never stored, only its SHA-256.
type Token struct {
	ID         string
	Name       string
	Tenant     string
	Admin      bool
	Hash       []byte
	CreateTime time.Time
	RevokeTime time.Time // zero while valid
	ExpireTime time.Time // zero for a token valid until revoked
}

// PendingAuthorization is a mailbox's interactive sign-in (a device code), kept in the store so
// that it survives a restart and a failover: whichever replica owns the mailbox polls the identity
// platform until the user has signed in, and every replica can show it.
type PendingAuthorization struct {
	MailboxID string
	// State is the API's mailintake.v1.Authorization message, marshaled: its state, the URL and
	// code the user enters, the expiry and the poll interval.
	State []byte
	// Handle is what the provider polls with (the device code): a secret. The whole record is
	// sealed at rest, bound to the mailbox.
	Handle     string
	UpdateTime time.Time
}

// Store is the server's persistence.
type Store interface {
	// CreateMailbox saves a new mailbox. ErrConflict if its id exists.
	CreateMailbox(ctx context.Context, mb *Mailbox) error
	// GetMailbox returns a mailbox with its secrets. ErrNotFound if missing.
	GetMailbox(ctx context.Context, id string) (*Mailbox, error)
	// ListMailboxes returns mailboxes ordered by id.
	ListMailboxes(ctx context.Context, q MailboxQuery) ([]*Mailbox, error)
	// UpdateMailbox replaces a mailbox's definition and secrets. ErrNotFound if missing.
	UpdateMailbox(ctx context.Context, mb *Mailbox) error
	// DeleteMailbox removes a mailbox, its secrets and its provider state. ErrNotFound if missing.
	DeleteMailbox(ctx context.Context, id string) error

	// ProviderState returns the mailbox's provider state, nil when there is none.
	ProviderState(ctx context.Context, mailboxID string) ([]byte, error)
	// SetProviderState replaces the mailbox's provider state (nil clears it).
	SetProviderState(ctx context.Context, mailboxID string, state []byte) error
	// SwapProviderState replaces the mailbox's provider state only if it is still old (nil: there
	// was none), and answers ErrConflict when it changed meanwhile: a writer that read an older
	// state (a paused replica, a connection test on another replica) never overwrites a newer one,
	// such as a rotated refresh token. new nil clears it.
	SwapProviderState(ctx context.Context, mailboxID string, old, new []byte) error

	// SaveAuthorization replaces the mailbox's interactive sign-in in progress (nil-safe: a
	// mailbox has at most one). Fenced like the other session writes when the context carries a
	// lease. An unknown mailbox is ErrNotFound.
	SaveAuthorization(ctx context.Context, a *PendingAuthorization) error
	// GetAuthorization returns the mailbox's interactive sign-in, nil when there is none.
	GetAuthorization(ctx context.Context, mailboxID string) (*PendingAuthorization, error)

	// CreateToken saves a token. ErrConflict if its id or hash exists.
	CreateToken(ctx context.Context, t *Token) error
	// TokenByID returns a token. ErrNotFound if missing.
	TokenByID(ctx context.Context, id string) (*Token, error)
	// ListTokens returns the tokens ordered by creation.
	ListTokens(ctx context.Context, includeRevoked bool) ([]*Token, error)
	// RevokeToken marks a token revoked. ErrNotFound if missing.
	RevokeToken(ctx context.Context, id string, at time.Time) error

	SyncStore
	OutboxStore

	// VerifyKey checks that the store's secret key is the database's: the first call on a new
	// database seals a check value with it; later calls (every start, every replica) open it,
	// and answer ErrKeyMismatch when they cannot.
	VerifyKey(ctx context.Context) error
	// ClaimOnce reports whether this call is the first ever to claim name on this database:
	// true once, false for every later call from any process (a cluster-wide "do this once").
	ClaimOnce(ctx context.Context, name string) (bool, error)

	// Close releases the store.
	Close() error
}

// RevealedSecrets returns the mailbox's secrets as plain strings, for the provider.
func (m *Mailbox) RevealedSecrets() map[string]string {
	out := make(map[string]string, len(m.Secrets))
	for k, v := range m.Secrets {
		out[k] = v.Reveal()
	}
	return out
}
