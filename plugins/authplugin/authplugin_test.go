package authplugin

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorIsAndText(t *testing.T) {
	err := error(&Error{Reason: ReasonMFARequired, Code: "AADSTS50076", Message: "MFA is on", Action: "Use device_code."})
	if !errors.Is(err, ErrMFARequired) || errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("errors.Is does not follow the reason")
	}
	if got := err.Error(); got != "multi-factor authentication required (AADSTS50076): MFA is on. Use device_code." {
		t.Errorf("Error() = %q", got)
	}
}

// TestErrorsCrossTheWire converts errors the way the plugin and host sides do.
func TestErrorsCrossTheWire(t *testing.T) {
	in := &Error{Reason: ReasonConsentRequired, Code: "AADSTS65001", Message: "m", Action: "a",
		SupportIDs: map[string]string{"trace_id": "t"}, RetryAfter: 3 * time.Second}
	out := statusToError(errorToStatus(in))
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %#v, want %#v", out, in)
	}
	if c := status.Code(errorToStatus(&Error{Reason: ReasonTemporary})); c != codes.Unavailable {
		t.Errorf("temporary error code = %v", c)
	}
	plain := statusToError(errorToStatus(errors.New("boom")))
	if _, ok := AsError(plain); ok || status.Code(plain) != codes.Internal {
		t.Errorf("an untyped error became %v", plain)
	}
	if status.Code(errorToStatus(context.DeadlineExceeded)) != codes.DeadlineExceeded {
		t.Errorf("deadline not kept")
	}
}

func TestDescriptionRoundTrip(t *testing.T) {
	d := Description{Name: "x", Version: "1", DisplayName: "X", Description: "d",
		Fields:         []Field{{Name: "a", Label: "A", Help: "h", Type: FieldEnum, Required: true, Secret: true, Options: []string{"p", "q"}, Default: "p"}},
		SASLMechanisms: []string{"PLAIN"}, Protocols: []string{"imap"}, Interactive: true}
	if got := descriptionFromProto(descriptionToProto(d)); !reflect.DeepEqual(got, d) {
		t.Errorf("round trip = %+v, want %+v", got, d)
	}
	// A field without a type travels as a string field.
	if got := descriptionToProto(Description{Fields: []Field{{Name: "b"}}}); got.Fields[0].Type != 1 {
		t.Errorf("untyped field = %v", got.Fields[0].Type)
	}
}

func TestValidator(t *testing.T) {
	var v Validator
	if v.Err() != nil {
		t.Fatal("empty validator returned an error")
	}
	v.Add("client_id", "must be a GUID, not %q", "x")
	var verr *ValidationError
	if !errors.As(v.Err(), &verr) || verr.Violations[0].Field != "client_id" || verr.Error() != `invalid config: client_id: must be a GUID, not "x"` {
		t.Errorf("Err() = %v", v.Err())
	}
}

// A plugin exits once its host is gone (it was re-parented), and not before.
func TestExitWithParent(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	exited := make(chan struct{})
	go exitWithParent(4242, time.Millisecond, func() int { return int(ppid.Load()) }, func() { close(exited) })
	select {
	case <-exited:
		t.Fatal("exited while the parent lives")
	case <-time.After(50 * time.Millisecond):
	}
	ppid.Store(1) // re-parented to init
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("still running after its parent died")
	}
}
