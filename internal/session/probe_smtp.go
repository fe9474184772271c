package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/smtpsend"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// testSMTP runs the sending steps of a connection test against the mailbox's submission server,
// as the outbox connects (outbox.Target, the provider's credential for protocol "smtp"), without
// sending anything. smtpsend reports finer steps than the checklist shows; each of its steps
// belongs to the checklist step in progress, which ends at:
//
//   - SMTP_CONNECT: DNS and TCP, and the greeting when it comes in plaintext (STARTTLS, none);
//   - SMTP_TLS: the TLS handshake (implicit TLS) or STARTTLS ("none" as configured);
//   - SMTP_EHLO: EHLO (and the greeting, after implicit TLS);
//   - SMTP_AUTH: the credential from the provider and the login.
//
// A failure ends the step in progress with smtpsend's explanation (535 5.7.139: SMTP AUTH
// turned off, and so on); the caller marks the later steps skipped. The login is checked with a
// credential issued afresh, as the IMAP steps do.
func (s *Supervisor) testSMTP(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string,
	start func(mailintakev1.TestStepKind), end func(*mailintakev1.TestStep)) {
	cur := mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT
	begun := time.Now()
	var details []string
	failed := false
	finish := func(err error, af *mailintakev1.AuthFailure) {
		step := &mailintakev1.TestStep{Kind: cur, Duration: durationpb.New(time.Since(begun)), Detail: strings.Join(details, "; "),
			Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK}
		if err != nil {
			failed = true
			step.Result = mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED
			step.Error = smtpSentence(err)
			step.AuthFailure = af
		}
		end(step)
		details = nil
		if err == nil && cur < mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH {
			cur++
			begun = time.Now()
			start(cur)
		}
	}
	start(cur)
	t, err := outbox.Target(mb)
	if err != nil {
		finish(err, nil)
		return
	}
	t.CommandTimeout = s.opts.CommandTimeout
	implicit := t.Security == smtpsend.TLS
	report := func(st smtpsend.Step) {
		if failed {
			return
		}
		switch st.Kind {
		case smtpsend.StepDNS:
			// The TCP step names the address connected to.
		case smtpsend.StepGreeting:
			if st.Detail != "" {
				details = append(details, "greeting: "+st.Detail)
			}
		default:
			if st.Detail != "" {
				details = append(details, st.Detail)
			}
		}
		if st.Err != nil {
			var af *mailintakev1.AuthFailure
			var ae *smtpsend.AuthError
			if errors.As(st.Err, &ae) {
				af = refusedSMTPLogin(st.Err)
			}
			finish(st.Err, af)
			return
		}
		switch {
		case st.Kind == smtpsend.StepTCP && implicit, st.Kind == smtpsend.StepGreeting && !implicit,
			st.Kind == smtpsend.StepTLS, st.Kind == smtpsend.StepHello, st.Kind == smtpsend.StepAuth:
			finish(nil, nil)
		}
	}
	conn, err := smtpsend.Dial(ctx, t, report)
	if err != nil {
		if !failed {
			finish(err, nil)
		}
		return
	}
	cred, err := s.plugins.Credential(ctx, mb.GetAuthProvider(), outbox.Account(mb, secrets), true)
	if err != nil {
		conn.Close()
		finish(&providerError{err: err}, authFailure(err))
		return
	}
	if err := conn.Authenticate(ctx, smtpsend.Credential{Mechanism: cred.Mechanism, Identity: cred.Identity, Secret: cred.Secret, Fresh: true}); err != nil {
		conn.Close()
		if !failed {
			finish(err, nil)
		}
		return
	}
	conn.Quit()
}

// smtpSentence words a failed SMTP step: the server's reply when it gave one, then smtpsend's
// explanation of what it means and what to do.
func smtpSentence(err error) string {
	var e *smtpsend.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	if e.Code == 0 {
		if e.Explanation != "" {
			return e.Explanation
		}
		return err.Error()
	}
	reply := fmt.Sprint(e.Code)
	if e.Enhanced != "" {
		reply += " " + e.Enhanced
	}
	if e.Text != "" {
		reply += " " + e.Text
	}
	return fmt.Sprintf("the server answered %s: %s", reply, e.Explanation)
}

// refusedSMTPLogin is the auth failure of a login the submission server refused: its message is
// the step's sentence (the server's reply and what it means).
func refusedSMTPLogin(err error) *mailintakev1.AuthFailure {
	var e *smtpsend.Error
	errors.As(err, &e)
	reason := mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS
	if e != nil && (e.Enhanced == "5.7.139" || e.Enhanced == "5.7.30") {
		// Turned off at the server: no credential cures it; a setting does.
		reason = mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID
	}
	return &mailintakev1.AuthFailure{Reason: reason, Message: smtpSentence(err)}
}
