package session

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

var stepKinds = map[imapconn.StepKind]mailintakev1.TestStepKind{
	imapconn.StepDNS:      mailintakev1.TestStepKind_TEST_STEP_KIND_DNS,
	imapconn.StepTCP:      mailintakev1.TestStepKind_TEST_STEP_KIND_TCP,
	imapconn.StepTLS:      mailintakev1.TestStepKind_TEST_STEP_KIND_TLS,
	imapconn.StepGreeting: mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING,
	imapconn.StepAuth:     mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH,
	imapconn.StepSelect:   mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT,
}

// Test runs a connection test step by step: DNS, TCP, TLS, greeting, authentication through the
// provider, and the folder; then, for a mailbox with sending on, the SMTP steps (testSMTP). It
// works on saved and unsaved definitions (mb.Id empty: nothing is cached or stored for it). A
// failed step is reported with its reason; the later ones of its protocol as skipped.
func (s *Supervisor) Test(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string) *mailintakev1.TestConnectionResponse {
	return s.TestSteps(ctx, mb, secrets, nil)
}

// PlanTest returns the steps Test runs for mb, in order (StreamConnectionTest sends them first).
func PlanTest(mb *mailintakev1.Mailbox) []mailintakev1.TestStepKind {
	var plan []mailintakev1.TestStepKind
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		plan = pop3Plan(mb) // probe_pop3.go
	} else {
		for k := mailintakev1.TestStepKind_TEST_STEP_KIND_DNS; k <= mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT; k++ {
			plan = append(plan, k)
		}
	}
	if outbox.SendingOn(mb) {
		for k := mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT; k <= mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH; k++ {
			plan = append(plan, k)
		}
	}
	return plan
}

// TestSteps is Test reporting each step to onStep (which may be nil) as it starts (result
// TEST_STEP_RESULT_RUNNING) and as it ends (the step as the answer holds it). The steps run one
// after the other, so a step starts when the one before it passed.
func (s *Supervisor) TestSteps(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string, onStep func(*mailintakev1.TestStep)) *mailintakev1.TestConnectionResponse {
	if onStep == nil {
		onStep = func(*mailintakev1.TestStep) {}
	}
	resp := &mailintakev1.TestConnectionResponse{Ok: true}
	seen := map[mailintakev1.TestStepKind]bool{}
	start := func(k mailintakev1.TestStepKind) {
		onStep(&mailintakev1.TestStep{Kind: k, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING})
	}
	end := func(step *mailintakev1.TestStep) {
		if step.Result == mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED {
			resp.Ok = false
		}
		seen[step.Kind] = true
		resp.Steps = append(resp.Steps, step)
		onStep(step)
	}
	skip := func(from, to mailintakev1.TestStepKind) {
		for k := from; k <= to; k++ {
			if !seen[k] {
				end(&mailintakev1.TestStep{Kind: k, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED})
			}
		}
	}
	report := func(st imapconn.Step, pe *authplugin.Error) {
		step := &mailintakev1.TestStep{Kind: stepKinds[st.Kind], Duration: durationpb.New(st.Duration), Detail: st.Detail,
			Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK}
		if st.Err != nil {
			step.Result = mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED
			step.Error = st.Err.Error()
			if st.Kind == imapconn.StepAuth {
				if pe != nil {
					step.AuthFailure = authFailure(pe)
				} else if imapconn.IsAuthError(st.Err) {
					step.AuthFailure = refusedLogin(st.Err)
				} else {
					step.AuthFailure = authFailure(st.Err)
				}
			}
		}
		end(step)
		if st.Err == nil && step.Kind < mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT {
			start(step.Kind + 1)
		}
	}
	start(mailintakev1.TestStepKind_TEST_STEP_KIND_DNS)
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		s.testPOP3(ctx, mb, secrets, start, end) // probe_pop3.go
	} else if conn, _, _, err := s.connect(ctx, mb, secrets, true, report); err == nil {
		// A test signs in afresh: a cached credential would hide what the provider says now.
		conn.Logout()
	} else if len(resp.Steps) == 0 || resp.Steps[len(resp.Steps)-1].Result != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED {
		// A failure before any step (e.g. an unusable CA) is reported on the first step.
		report(imapconn.Step{Kind: imapconn.StepDNS, Err: err}, nil)
	}
	skip(mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT)
	if outbox.SendingOn(mb) {
		// Sending is tested whatever reading found: the submission server is another server.
		s.testSMTP(ctx, mb, secrets, start, end)
		skip(mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH)
	}
	return resp
}

// Preview counts what a first sync of the definition would deliver, without changing anything.
func (s *Supervisor) Preview(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string) (*mailintakev1.PreviewFirstSyncResponse, error) {
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		return s.previewPOP3(ctx, mb, secrets)
	}
	conn, sel, _, err := s.connect(ctx, mb, secrets, false, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Logout()
	resp := &mailintakev1.PreviewFirstSyncResponse{StartFrom: mb.GetStartFrom(), FolderMessages: sel.NumMessages}
	unseen, err := conn.SearchUIDs(ctx, 1, true)
	if err != nil {
		return nil, err
	}
	resp.FolderUnseen = uint32(len(unseen))
	switch mb.GetStartFrom() {
	case mailintakev1.StartFrom_START_FROM_ALL:
		resp.WouldDeliver = sel.NumMessages
	case mailintakev1.StartFrom_START_FROM_UNSEEN:
		resp.WouldDeliver = resp.FolderUnseen
	}
	if st, err := s.store.SyncState(ctx, mb.GetId()); err == nil && st != nil && mb.GetId() != "" {
		resp.AlreadySynced = true
		resp.WouldDeliver = 0
	}
	return resp, nil
}

// ErrStaleMessage is returned for a message id whose UIDVALIDITY is no longer the folder's.
var ErrStaleMessage = errors.New("the folder was recreated since this message was delivered (UIDVALIDITY changed): the id is no longer valid")

// StreamRaw writes a message's raw bytes to w, fetched on a connection of its own so the
// mailbox's session is not disturbed.
func (s *Supervisor) StreamRaw(ctx context.Context, mb *store.Mailbox, key delivery.Key, w io.Writer) (int64, error) {
	if mb.Spec.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		return s.streamRawPOP3(ctx, mb, key, w)
	}
	conn, sel, _, err := s.connect(ctx, mb.Spec, mb.RevealedSecrets(), false, nil)
	if err != nil {
		return 0, err
	}
	defer conn.Logout()
	if sel.UIDValidity != key.UIDValidity {
		return 0, ErrStaleMessage
	}
	n, err := conn.StreamRaw(ctx, key.UID, w)
	if errors.Is(err, imapconn.ErrGone) {
		return 0, fmt.Errorf("message %s: %w", key, err)
	}
	return n, err
}
