package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailintake/mailintake/internal/store"
)

// These tests need no server: they pin down how errors are mapped and retried.

func TestWrap(t *testing.T) {
	ctx := context.Background()
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	unavailable := map[string]string{
		"57P01": "shutting down",
		"57P02": "shutting down",
		"57P03": "shutting down",
		"53100": "disk is full",
		"53300": "max_connections",
		"53200": "out of memory",
		"53400": "out of resources",
		"08006": "check that it is running",
		"08001": "check that it is running",
		"40001": "try again",
		"40P01": "try again",
		"25006": "primary",
		"57014": "timed out",
		"58030": "disk",
		"XX001": "corrupted",
		"28P01": "credentials",
		"3D000": "does not exist",
	}
	for code, phrase := range unavailable {
		err := wrap(ctx, pg(code))
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), phrase) {
			t.Errorf("wrap(%s) = %v, want ErrUnavailable saying %q", code, err, phrase)
		}
		if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != code {
			t.Errorf("wrap(%s) lost the driver's error", code)
		}
		if strings.Contains(err.Error(), "SQLSTATE") {
			t.Errorf("wrap(%s) text carries the driver's message: %q", code, err)
		}
	}
	if err := wrap(ctx, pg("23505")); err != store.ErrConflict {
		t.Errorf("wrap(unique violation) = %v, want ErrConflict", err)
	}
	for _, code := range []string{"23503", "22021", "42P01", "0A000"} {
		if err := wrap(ctx, pg(code)); errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrConflict) {
			t.Errorf("wrap(%s) = %v, want the error unchanged", code, err)
		}
	}
	for _, err := range []error{
		io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE,
		&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET},
		fmt.Errorf("x: %w", pgconn.ErrConnClosed),
		&pgconn.ConnectError{Config: &pgconn.Config{}},
	} {
		if got := wrap(ctx, err); !errors.Is(got, store.ErrUnavailable) {
			t.Errorf("wrap(%v) = %v, want ErrUnavailable", err, got)
		}
	}
	// The caller gave up: its context's error passes unchanged.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := wrap(cctx, fmt.Errorf("q: %w", context.Canceled)); errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("wrap(canceled) = %v", err)
	}
	if wrap(ctx, nil) != nil || wrap(ctx, store.ErrNotFound) != store.ErrNotFound {
		t.Errorf("wrap changed nil or ErrNotFound")
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	s := &Store{}
	calls := 0
	err := s.retry(ctx, func() error {
		calls++
		if calls < 3 {
			return &pgconn.PgError{Code: []string{"40P01", "40001"}[calls-1]}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("retry of two conflicts = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	err = s.retry(ctx, func() error { calls++; return &pgconn.PgError{Code: "40001"} })
	if !errors.Is(err, store.ErrUnavailable) || calls != maxAttempts {
		t.Errorf("retry of endless conflicts = %v after %d calls, want ErrUnavailable after %d", err, calls, maxAttempts)
	}
	calls = 0
	err = s.retry(ctx, func() error { calls++; return &pgconn.PgError{Code: "23503"} })
	if err == nil || calls != 1 {
		t.Errorf("retry of a foreign key violation = %v after %d calls, want 1 call", err, calls)
	}
	calls = 0
	s.retry(ctx, func() error {
		calls++
		return &pgconn.PgError{Code: "0A000", Message: "cached plan must not change result type"}
	})
	if calls != maxAttempts {
		t.Errorf("a stale cached plan was tried %d times, want %d", calls, maxAttempts)
	}
}

func TestTextAndMessages(t *testing.T) {
	for in, want := range map[string]bool{"a": true, "": true, "é": true, "\xff": false, "a\x00": false, "\xc3": false} {
		if storable(in) != want {
			t.Errorf("storable(%q) = %v", in, !want)
		}
	}
	if got := text("a\x00b\xffc"); got != "a?b?c" {
		t.Errorf("text = %q", got)
	}
	if got := eventMessage(strings.Repeat("x", 1999) + "é"); got != strings.Repeat("x", 1999)+"?…" {
		t.Errorf("eventMessage cut inside a rune = %q", got)
	}
}
