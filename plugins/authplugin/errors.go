package authplugin

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reason classifies a provider failure. The values match authplugin.v1.Reason.
type Reason int

// Reasons.
const (
	ReasonUnknown Reason = iota
	ReasonInvalidCredentials
	ReasonMFARequired
	ReasonConsentRequired
	ReasonAccountLocked
	ReasonAccountDisabled
	ReasonPasswordExpired
	ReasonConfigInvalid
	ReasonTemporary
	ReasonAuthorizationRequired
	ReasonAuthorizationPending
	ReasonAuthorizationExpired
)

var reasonNames = [...]string{
	ReasonUnknown:               "unknown",
	ReasonInvalidCredentials:    "invalid credentials",
	ReasonMFARequired:           "multi-factor authentication required",
	ReasonConsentRequired:       "consent required",
	ReasonAccountLocked:         "account locked",
	ReasonAccountDisabled:       "account disabled",
	ReasonPasswordExpired:       "password expired",
	ReasonConfigInvalid:         "configuration invalid",
	ReasonTemporary:             "temporary failure",
	ReasonAuthorizationRequired: "sign-in required",
	ReasonAuthorizationPending:  "sign-in pending",
	ReasonAuthorizationExpired:  "sign-in expired",
}

// String returns the reason in words.
func (r Reason) String() string {
	if r < 0 || int(r) >= len(reasonNames) {
		return fmt.Sprintf("reason(%d)", int(r))
	}
	return reasonNames[r]
}

// Error is a provider failure the admin can act on. It crosses the process boundary intact.
type Error struct {
	Reason     Reason            // the classification
	Code       string            // the provider's own code, e.g. "AADSTS50076"
	Message    string            // what went wrong
	Action     string            // what the admin must do
	SupportIDs map[string]string // e.g. trace_id, correlation_id
	RetryAfter time.Duration     // for temporary failures: when to try again
}

// Error returns the message with its code and the action.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason.String())
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Action != "" {
		b.WriteString(". " + e.Action)
	}
	return b.String()
}

// Is reports whether target is an *Error with the same Reason, so that sentinel comparisons
// such as errors.Is(err, ErrInvalidCredentials) work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// Sentinels for errors.Is. Return a fresh *Error with a message and action instead of these.
var (
	ErrInvalidCredentials    = &Error{Reason: ReasonInvalidCredentials}
	ErrMFARequired           = &Error{Reason: ReasonMFARequired}
	ErrConsentRequired       = &Error{Reason: ReasonConsentRequired}
	ErrAccountLocked         = &Error{Reason: ReasonAccountLocked}
	ErrAccountDisabled       = &Error{Reason: ReasonAccountDisabled}
	ErrPasswordExpired       = &Error{Reason: ReasonPasswordExpired}
	ErrConfigInvalid         = &Error{Reason: ReasonConfigInvalid}
	ErrTemporary             = &Error{Reason: ReasonTemporary}
	ErrAuthorizationRequired = &Error{Reason: ReasonAuthorizationRequired}
	ErrAuthorizationPending  = &Error{Reason: ReasonAuthorizationPending}
	ErrAuthorizationExpired  = &Error{Reason: ReasonAuthorizationExpired}
)

// ErrNotInteractive is returned by the host-side client when the provider does not implement
// [Authorizer].
var ErrNotInteractive = errors.New("the provider does not support interactive sign-in")

// AsError returns err's *Error, if it has one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// FieldViolation names a bad config field.
type FieldViolation struct {
	Field       string // the field name
	Description string // what is wrong
}

// ValidationError lists the bad fields of a config.
type ValidationError struct {
	Violations []FieldViolation
}

// Error lists the violations.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid config: " + strings.Join(parts, "; ")
}

// Validator collects field violations. The zero value is ready to use.
type Validator struct {
	violations []FieldViolation
}

// Add records a violation.
func (v *Validator) Add(field, format string, args ...any) {
	v.violations = append(v.violations, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns a *ValidationError with the violations, or nil when there are none.
func (v *Validator) Err() error {
	if len(v.violations) == 0 {
		return nil
	}
	return &ValidationError{Violations: v.violations}
}
