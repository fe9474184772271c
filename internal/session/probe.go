package session

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
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
// provider, and the folder. It works on saved and unsaved definitions (mb.Id empty: nothing is
// cached or stored for it). A failed step is reported with its reason; the later ones as skipped.
func (s *Supervisor) Test(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string) *mailintakev1.TestConnectionResponse {
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		return s.testPOP3(ctx, mb, secrets)
	}
	resp := &mailintakev1.TestConnectionResponse{Ok: true}
	seen := map[mailintakev1.TestStepKind]bool{}
	report := func(st imapconn.Step, pe *authplugin.Error) {
		step := &mailintakev1.TestStep{Kind: stepKinds[st.Kind], Duration: durationpb.New(st.Duration), Detail: st.Detail,
			Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK}
		if st.Err != nil {
			resp.Ok = false
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
		seen[step.Kind] = true
		resp.Steps = append(resp.Steps, step)
	}
	// A test signs in afresh: a cached credential would hide what the provider says now.
	conn, _, _, err := s.connect(ctx, mb, secrets, true, report)
	if err == nil {
		conn.Logout()
	} else if len(resp.Steps) == 0 || resp.Steps[len(resp.Steps)-1].Result != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED {
		// A failure before any step (e.g. an unusable CA) is reported on the first step.
		report(imapconn.Step{Kind: imapconn.StepDNS, Err: err}, nil)
	}
	for k := mailintakev1.TestStepKind_TEST_STEP_KIND_DNS; k <= mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT; k++ {
		if !seen[k] {
			resp.Steps = append(resp.Steps, &mailintakev1.TestStep{Kind: k, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED})
		}
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
