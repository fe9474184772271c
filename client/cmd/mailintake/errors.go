package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/client"
)

// Exit codes (PRODUCT.md section 8).
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

// Error returns the message.
func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error with a formatted message.
func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errUsageShown is a usage error whose explanation (the command's usage) is already printed.
var errUsageShown = &usageError{}

// failure is an operation that failed for a reason already explained to the user (exit 1).
type failure struct{ msg string }

// Error returns the message.
func (e *failure) Error() string { return e.msg }

// report prints err, which running cmd returned, and returns the exit code. started says whether
// a command began to run: an error before that (a flag or argument that cobra rejected) is a
// usage error.
func (a *app) report(cmd *cobra.Command, err error, started bool) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var f *failure
	switch {
	case errors.As(err, &ue) || !started:
		if ue == errUsageShown {
			return exitUsage
		}
		fmt.Fprintln(a.stderr, "mailintake:", err)
		hint := "mailintake COMMAND"
		if cmd != nil && cmd.HasParent() {
			hint = cmd.CommandPath()
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", hint)
		return exitUsage
	case errors.As(err, &f):
		fmt.Fprintln(a.stderr, "mailintake:", f.msg)
		return exitFailed
	case errors.Is(err, errNoToken):
		fmt.Fprintln(a.stderr, "mailintake:", err)
		return exitUnreachable
	case errors.Is(err, client.ErrPlaintext):
		fmt.Fprintln(a.stderr, "mailintake:", err, "(--tls or --insecure)")
		return exitUnreachable
	}
	return a.reportStatus(err)
}

// reportStatus prints an error the server (or the connection to it) returned.
func (a *app) reportStatus(err error) int {
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintln(a.stderr, "mailintake:", err)
		return exitFailed
	}
	switch st.Code() {
	case codes.Unavailable:
		fmt.Fprintf(a.stderr, "mailintake: cannot reach the server at %s: %s\n", a.g.addr, st.Message())
		return exitUnreachable
	case codes.Unauthenticated:
		fmt.Fprintln(a.stderr, "mailintake: not authenticated:", st.Message())
		return exitUnreachable
	case codes.DeadlineExceeded:
		fmt.Fprintf(a.stderr, "mailintake: the server at %s did not answer in time\n", a.g.addr)
		return exitUnreachable
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			fmt.Fprintln(a.stderr, "mailintake: invalid request:")
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(a.stderr, "  %s: %s\n", v.GetField(), v.GetDescription())
			}
			return exitFailed
		}
	}
	fmt.Fprintf(a.stderr, "mailintake: %s: %s\n", humanCode(st.Code()), st.Message())
	return exitFailed
}

// humanCode names a gRPC status code in the words of the CLI's messages.
func humanCode(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid request"
	case codes.NotFound:
		return "not found"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.Unimplemented:
		return "not supported by this server"
	case codes.FailedPrecondition:
		return "cannot do that now"
	default:
		return strings.ToLower(c.String())
	}
}
