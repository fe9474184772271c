package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/pop3"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// pop3StepKinds maps POP3's connection steps onto the API's: CAPA (before and after STLS) is
// part of the greeting, STAT (the maildrop opened and locked) stands where IMAP selects the folder.
var pop3StepKinds = map[pop3.StepKind]mailintakev1.TestStepKind{
	pop3.StepDNS:          mailintakev1.TestStepKind_TEST_STEP_KIND_DNS,
	pop3.StepTCP:          mailintakev1.TestStepKind_TEST_STEP_KIND_TCP,
	pop3.StepTLS:          mailintakev1.TestStepKind_TEST_STEP_KIND_TLS,
	pop3.StepGreeting:     mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING,
	pop3.StepCapabilities: mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING,
	pop3.StepAuth:         mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH,
	pop3.StepMaildrop:     mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT,
}

// pop3Plan is the order of a POP3 mailbox's reading steps: with STLS (and in plaintext, whose
// TLS step says "none") the greeting comes before the TLS step.
func pop3Plan(mb *mailintakev1.Mailbox) []mailintakev1.TestStepKind {
	order := []mailintakev1.TestStepKind{mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, mailintakev1.TestStepKind_TEST_STEP_KIND_TCP,
		mailintakev1.TestStepKind_TEST_STEP_KIND_TLS, mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING,
		mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH, mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT}
	if sec := mb.GetSecurity(); sec == mailintakev1.Security_SECURITY_STARTTLS || sec == mailintakev1.Security_SECURITY_NONE {
		order[2], order[3] = order[3], order[2]
	}
	return order
}

// testPOP3 is TestSteps' reading part for a POP3 mailbox: DNS, TCP, TLS, the greeting with CAPA,
// the login through the provider (afresh), and STAT (the maildrop can be opened), then QUIT
// without deleting anything. start and end are TestSteps': a step is ended once, and the next
// one in the order of the mailbox's security started when it passed.
func (s *Supervisor) testPOP3(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string,
	start func(mailintakev1.TestStepKind), end func(*mailintakev1.TestStep)) {
	order := pop3Plan(mb)
	ended := map[mailintakev1.TestStepKind]bool{}
	var failed bool
	finish := func(step *mailintakev1.TestStep) {
		ended[step.Kind] = true
		end(step)
		if step.Result == mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED {
			failed = true
			return
		}
		if i := slices.Index(order, step.Kind); i >= 0 && i+1 < len(order) && !ended[order[i+1]] {
			start(order[i+1])
		}
	}
	// The greeting's step waits for the first CAPA's answer, which it carries (in plaintext the
	// TLS step, "none", comes between them and waits with it); a CAPA after STLS that fails is
	// reported on the step that did not happen (the login).
	var greeting *mailintakev1.TestStep
	var held []*mailintakev1.TestStep
	capa := false
	flush := func() {
		if greeting != nil {
			finish(greeting)
			greeting = nil
		}
		for _, st := range held {
			finish(st)
		}
		held = nil
	}
	tr := &pop3Transport{}
	// A login refused for a moment ([IN-USE]: the mailbox's own session is polling, as it does
	// at once when the mailbox was just saved enabled) is tried again for up to pop3LockWait,
	// the login's step running meanwhile; a retry reports only the login and STAT, the
	// connection's steps having passed on the first attempt.
	attempt, retry, deadline := 0, false, time.Now().Add(pop3LockWait)
	report := func(st pop3.Step, pe *authplugin.Error) {
		if attempt > 0 && st.Kind != pop3.StepAuth && st.Kind != pop3.StepMaildrop {
			return
		}
		if se, ok := pop3.IsServerError(st.Err); ok && st.Kind == pop3.StepAuth && pe == nil && se.Temporary() && time.Now().Before(deadline) {
			retry = true
			return
		}
		kind := pop3StepKinds[st.Kind]
		step := &mailintakev1.TestStep{Kind: kind, Duration: durationpb.New(st.Duration), Detail: st.Detail,
			Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK}
		if st.Err != nil {
			step.Result = mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED
			step.Error = st.Err.Error()
		}
		switch {
		case st.Kind == pop3.StepGreeting:
			greeting = step
			if st.Err != nil {
				flush()
			}
			return
		case st.Kind == pop3.StepCapabilities && !capa && greeting != nil:
			capa = true
			if st.Err != nil {
				greeting.Result, greeting.Error = step.Result, "CAPA: "+step.Error
			} else if st.Detail != "" {
				greeting.Detail += "; CAPA: " + st.Detail
			}
			greeting.Duration = durationpb.New(greeting.Duration.AsDuration() + st.Duration)
			flush()
			return
		case st.Kind == pop3.StepCapabilities:
			if st.Err == nil {
				return // CAPA again after STLS: the TLS step said the handshake passed
			}
			step.Kind, step.Error = mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH, "CAPA after STLS: "+step.Error
		case st.Kind == pop3.StepTLS && greeting != nil && !capa && st.Err == nil:
			held = append(held, step)
			return
		}
		flush()
		if st.Kind == pop3.StepAuth && st.Err != nil {
			if pe != nil {
				step.AuthFailure = authFailure(pe)
			} else if af, ok := tr.refused(st.Err); ok {
				step.AuthFailure = af
			} else if se, ok := pop3.IsServerError(st.Err); ok && se.Temporary() {
				// Still refused for a moment once the wait is over: not the provider's fault.
				step.AuthFailure = &mailintakev1.AuthFailure{Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_TEMPORARY, Message: se.Error(),
					Action: "Test again in a minute. If it persists, close the other POP3 clients of this mailbox: its maildrop serves one session at a time."}
			} else {
				step.AuthFailure = authFailure(st.Err)
			}
		}
		finish(step)
	}
	var conn *pop3.Conn
	var err error
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		retry = false
		conn, err = s.connectPOP3(ctx, mb, secrets, attempt == 0, report)
		if !retry {
			break
		}
		attempt++
		select {
		case <-time.After(wait):
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		break
	}
	if err == nil {
		_, _, err = conn.Stat(ctx) // reports StepMaildrop
		if err == nil {
			_, err = conn.Quit(ctx)
		} else {
			conn.Close()
		}
	}
	flush()
	if err != nil && !failed {
		// A failure no step reported (an unusable CA, QUIT refused) is reported on the first
		// step that did not end.
		for _, k := range order {
			if !ended[k] {
				finish(&mailintakev1.TestStep{Kind: k, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED, Error: err.Error()})
				break
			}
		}
	}
}

// previewPOP3 is Preview for a POP3 mailbox: the maildrop's messages (POP3 has no flags, so
// none counts as seen), and what a first sync would deliver. Nothing is changed.
func (s *Supervisor) previewPOP3(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string) (*mailintakev1.PreviewFirstSyncResponse, error) {
	conn, err := s.connectPOP3Shared(ctx, mb, secrets)
	if err != nil {
		return nil, err
	}
	n, _, err := conn.Stat(ctx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := conn.Quit(ctx); err != nil {
		return nil, err
	}
	resp := &mailintakev1.PreviewFirstSyncResponse{StartFrom: mb.GetStartFrom(), FolderMessages: uint32(n), FolderUnseen: uint32(n)}
	if mb.GetStartFrom() != mailintakev1.StartFrom_START_FROM_NEW {
		resp.WouldDeliver = uint32(n)
	}
	if st, err := s.store.SyncState(ctx, mb.GetId()); err == nil && st != nil && mb.GetId() != "" {
		resp.AlreadySynced = true
		resp.WouldDeliver = 0
	}
	return resp, nil
}

// maxRawPOP3 bounds what streamRawPOP3 reads of one message.
const maxRawPOP3 = 1 << 40

// streamRawPOP3 is StreamRaw for a POP3 mailbox: the message's unique-id from the checkpoint,
// its number in a session of its own (UIDL), RETR streamed to w, QUIT (nothing is marked, so
// nothing is deleted). A message no longer on the server, or whose unique-id was forgotten, is
// imapconn.ErrGone.
func (s *Supervisor) streamRawPOP3(ctx context.Context, mb *store.Mailbox, key delivery.Key, w io.Writer) (int64, error) {
	if key.UIDValidity != store.POP3UIDValidity {
		return 0, ErrStaleMessage
	}
	uidl, err := s.store.UIDLOf(ctx, mb.Spec.GetId(), key.UID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("message %s: %w", key, imapconn.ErrGone)
	}
	if err != nil {
		return 0, err
	}
	conn, err := s.connectPOP3Shared(ctx, mb.Spec, mb.RevealedSecrets())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	list, err := conn.UIDL(ctx)
	if err != nil {
		return 0, err
	}
	n, ok := list.ByUID(uidl)
	if !ok {
		return 0, fmt.Errorf("message %s: %w", key, imapconn.ErrGone)
	}
	m, err := conn.RetrTo(ctx, n, w, maxRawPOP3)
	if err != nil {
		return m.Size, err
	}
	_, err = conn.Quit(ctx)
	return m.Size, err
}

// connectPOP3Shared logs in to a mailbox whose session may hold the maildrop's lock for a
// moment (a poll in progress): a login answered [IN-USE] (or another temporary refusal) is
// tried again for up to pop3LockWait.
func (s *Supervisor) connectPOP3Shared(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string) (*pop3.Conn, error) {
	deadline := time.Now().Add(pop3LockWait)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		conn, err := s.connectPOP3(ctx, mb, secrets, false, nil)
		se, temporary := pop3.IsServerError(err)
		if err == nil || !temporary || !se.Temporary() || time.Now().Add(wait).After(deadline) {
			return conn, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pop3LockWait bounds how long connectPOP3Shared waits for a maildrop's lock.
const pop3LockWait = 15 * time.Second
