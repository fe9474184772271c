package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

// This file is the one place where domain errors become gRPC status codes. Handlers return
// plain errors; the interceptor calls toStatus. Internal error text never reaches the client:
// it is logged with the request id, which the client sees.

// FieldViolation names a bad request field.
type FieldViolation struct {
	Field       string // the request field path, e.g. "mailbox.port"
	Description string // what is wrong
}

// InvalidError is a request that failed validation.
type InvalidError struct {
	Violations []FieldViolation
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// violations collects field violations.
type violations []FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// err returns an *InvalidError with the violations sorted by field, one per field (the first
// one found: the server's own checks run before the provider's), or nil.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []FieldViolation
	for _, fv := range v {
		if !seen[fv.Field] {
			seen[fv.Field] = true
			out = append(out, fv)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return &InvalidError{Violations: out}
}

// errPermission is the API layer's permission error.
var errPermission = errors.New("permission denied")

// notFound wraps store.ErrNotFound with what was not found.
func notFound(kind, id string) error {
	return fmt.Errorf("%s %q %w", kind, id, store.ErrNotFound)
}

// permission wraps errPermission with a reason the caller may read.
func permission(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPermission, fmt.Sprintf(format, args...))
}

// toStatus maps an error to the status the client receives.
func toStatus(ctx context.Context, log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var inv *InvalidError
	var perr *authplugin.Error
	switch {
	case errors.As(err, &inv):
		st := status.New(codes.InvalidArgument, inv.Error())
		br := &errdetails.BadRequest{}
		for _, v := range inv.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		if d, derr := st.WithDetails(br); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, errPermission):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.As(err, &perr):
		return status.Error(codes.FailedPrecondition, perr.Error())
	case errors.Is(err, pluginhost.ErrPinMismatch), errors.Is(err, pluginhost.ErrPluginFailed):
		// The server answered: its provider is broken. Unavailable would read "cannot reach
		// the server" to every client.
		log.ErrorContext(ctx, "auth provider failure", "method", method, "request_id", requestID(ctx), "err", err)
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, new(*ConnectionError)):
		return status.Error(codes.FailedPrecondition, "the mail server: "+err.Error())
	case errors.Is(err, authplugin.ErrNotInteractive):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrUnavailable):
		// The disk is full, read-only or failing: the client may retry once the admin fixed it.
		log.ErrorContext(ctx, "store unavailable", "method", method, "request_id", requestID(ctx), "err", err, "cause", lastCause(err))
		return status.Error(codes.Unavailable, err.Error()+"; nothing was recorded: retry once this is fixed")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	default:
		id := requestID(ctx)
		log.ErrorContext(ctx, "internal error", "method", method, "request_id", id, "err", err)
		return status.Errorf(codes.Internal, "internal error (request id %s); the server log has the details", id)
	}
}

// lastCause follows an error's chain to its last cause (the driver's error behind a store one).
func lastCause(err error) error {
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			if l := u.Unwrap(); len(l) > 0 {
				next = l[len(l)-1]
			}
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		}
		if next == nil {
			return err
		}
		err = next
	}
}

// ConnectionError is a failure to reach or use a mailbox's server on behalf of a request; its
// text is the connection layer's description, meant for the admin.
type ConnectionError struct{ Err error }

func (e *ConnectionError) Error() string { return e.Err.Error() }
func (e *ConnectionError) Unwrap() error { return e.Err }

func connectionFailed(err error) error {
	if err == nil {
		return nil
	}
	return &ConnectionError{Err: err}
}
