package authplugin

import (
	"context"
	"time"
)

// Provider is what an auth provider plugin implements. Implementations must be safe for
// concurrent use: one process serves every mailbox.
type Provider interface {
	// Describe returns the provider's name, fields and capabilities.
	Describe(ctx context.Context) (Description, error)
	// ValidateConfig checks an account's config and secrets. It returns nil when they are
	// valid and a [*ValidationError] naming each bad field otherwise.
	ValidateConfig(ctx context.Context, acct Account) error
	// IssueCredential returns a credential for the account.
	IssueCredential(ctx context.Context, req Request) (IssueResult, error)
}

// Authorizer is implemented by providers that support an interactive sign-in.
type Authorizer interface {
	// BeginAuthorization starts a sign-in and tells the user what to do.
	BeginAuthorization(ctx context.Context, req Request) (Authorization, error)
	// PollAuthorization checks whether the sign-in completed. It returns an [*Error] with
	// [ReasonAuthorizationPending] while the user has not signed in yet.
	PollAuthorization(ctx context.Context, req Request, handle []byte) (PollResult, error)
}

// FieldType is the type of a config field.
type FieldType int

// Field types.
const (
	FieldString FieldType = iota + 1
	FieldEnum
	FieldBool
	FieldInt
	FieldURL
)

// Field describes a config field so a UI can render the form.
type Field struct {
	Name     string    // key in Account.Config, or Account.Secrets when Secret is set
	Label    string    // e.g. "Application (client) ID"
	Help     string    // help text
	Type     FieldType // the type; zero means FieldString
	Required bool      // must be set
	Secret   bool      // write-only, stored encrypted, passed in Account.Secrets
	Options  []string  // allowed values of an enum field
	Default  string    // value used when unset
}

// Description describes a provider.
type Description struct {
	Name           string   // the provider name; the executable is mailintake-auth-<Name>
	Version        string   // the provider's version
	DisplayName    string   // a human name
	Description    string   // what it is for
	Fields         []Field  // the config fields
	SASLMechanisms []string // e.g. "PLAIN", "LOGIN", "XOAUTH2"
	Protocols      []string // "imap", "pop3", "smtp"
	// Interactive is set by the SDK when the provider implements [Authorizer]; providers
	// need not set it.
	Interactive bool
}

// Account is what a provider knows of the mailbox it serves.
type Account struct {
	MailboxID string            // the mailbox id
	Protocol  string            // "imap", "pop3" or "smtp"
	Host      string            // mail server host
	Port      int               // mail server port
	Username  string            // the mailbox's username
	Config    map[string]string // non-secret provider fields
	Secrets   map[string]string // secret provider fields
}

// Request asks for a credential or an authorization.
type Request struct {
	Account Account
	// State is what the provider returned as state last time (decrypted), or nil.
	State []byte
	// ForceRefresh is set when the mail server refused the last credential: do not reuse a
	// token that the provider may have considered still valid.
	ForceRefresh bool
}

// Credential is what the server presents to the mail server.
type Credential struct {
	Mechanism string    // SASL mechanism: "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"
	Identity  string    // the user to authenticate as
	Secret    string    // password or access token
	Expiry    time.Time // zero when the credential does not expire
}

// IssueResult is the result of IssueCredential.
type IssueResult struct {
	Credential Credential
	// State, when StateChanged is set, replaces the stored state. The server stores it before
	// it uses the credential.
	State        []byte
	StateChanged bool
	// Health, when set, tells the admin about the credential's lifecycle (shown in the status).
	Health *Health
}

// Health describes a token-based credential's lifecycle.
type Health struct {
	RefreshTokenIssued time.Time // when the refresh token in use was issued
	Warnings           []string  // what to act on before the mailbox stops
}

// Authorization tells the user how to complete an interactive sign-in.
type Authorization struct {
	VerificationURI string        // the URL to open
	UserCode        string        // the code to enter
	Message         string        // the instruction to show
	Expiry          time.Time     // when the code expires
	Interval        time.Duration // how often to poll
	Handle          []byte        // opaque data passed back to PollAuthorization
}

// PollResult is the result of PollAuthorization.
type PollResult struct {
	Done     bool          // the user signed in
	State    []byte        // the state to store from now on, when Done
	Interval time.Duration // a new polling interval, when the identity provider asked to slow down
}
