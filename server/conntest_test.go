package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// streamedTest is what StreamConnectionTest sent, in order.
type streamedTest struct {
	plan    []mailintakev1.TestStepKind
	events  []*mailintakev1.TestStep
	summary *mailintakev1.TestConnectionResponse
}

func streamTest(t *testing.T, e *env, token string, req *mailintakev1.StreamConnectionTestRequest) (*streamedTest, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(as(token), 60*time.Second)
	defer cancel()
	stream, err := e.mailbox.StreamConnectionTest(ctx, req)
	if err != nil {
		return nil, err
	}
	got := &streamedTest{}
	for i := 0; ; i++ {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch ev := resp.GetEvent().(type) {
		case *mailintakev1.StreamConnectionTestResponse_Plan:
			if i != 0 {
				t.Errorf("the plan came as message %d, not first", i)
			}
			got.plan = ev.Plan.GetSteps()
		case *mailintakev1.StreamConnectionTestResponse_Step:
			if got.summary != nil {
				t.Errorf("a step after the summary: %v", ev.Step)
			}
			got.events = append(got.events, ev.Step)
		case *mailintakev1.StreamConnectionTestResponse_Summary:
			got.summary = ev.Summary
		default:
			t.Errorf("message %d has no event: %v", i, resp)
		}
	}
	if got.summary == nil {
		t.Fatal("the stream ended without its summary")
	}
	return got, nil
}

// checkOrder checks that every planned step starts (RUNNING) only after the one before it ended,
// ends once, and that the ended steps are the summary's, in the plan's order.
func (s *streamedTest) checkOrder(t *testing.T) {
	t.Helper()
	var ended []*mailintakev1.TestStep
	running := mailintakev1.TestStepKind_TEST_STEP_KIND_UNSPECIFIED
	for _, ev := range s.events {
		if ev.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING {
			if running != mailintakev1.TestStepKind_TEST_STEP_KIND_UNSPECIFIED {
				t.Errorf("%v started while %v was running", ev.GetKind(), running)
			}
			if len(ended) >= len(s.plan) || s.plan[len(ended)] != ev.GetKind() {
				t.Errorf("%v started after %d ended steps; plan %v", ev.GetKind(), len(ended), s.plan)
			}
			running = ev.GetKind()
			continue
		}
		if ev.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED && running != ev.GetKind() {
			t.Errorf("%v ended (%v) without having started (running: %v)", ev.GetKind(), ev.GetResult(), running)
		}
		running = mailintakev1.TestStepKind_TEST_STEP_KIND_UNSPECIFIED
		ended = append(ended, ev)
	}
	if len(ended) != len(s.plan) || len(s.summary.GetSteps()) != len(s.plan) {
		t.Fatalf("%d steps ended, %d in the summary; plan %v", len(ended), len(s.summary.GetSteps()), s.plan)
	}
	for i, k := range s.plan {
		if ended[i].GetKind() != k || s.summary.GetSteps()[i].GetKind() != k || ended[i].GetResult() != s.summary.GetSteps()[i].GetResult() {
			t.Errorf("step %d: streamed %v %v, summary %v, plan %v", i, ended[i].GetKind(), ended[i].GetResult(), s.summary.GetSteps()[i], k)
		}
	}
}

func (s *streamedTest) step(k mailintakev1.TestStepKind) *mailintakev1.TestStep {
	for _, st := range s.summary.GetSteps() {
		if st.GetKind() == k {
			return st
		}
	}
	return nil
}

func TestStreamConnectionTestSendsEachStepAsItRuns(t *testing.T) {
	e := newEnv(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)

	// Reading only: the six IMAP steps, each running then passed, then the summary.
	got, err := streamTest(t, e, e.admin, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: imapMailbox(imap, "acme")}})
	if err != nil {
		t.Fatal(err)
	}
	got.checkOrder(t)
	if len(got.plan) != 6 || !got.summary.GetOk() || len(got.events) != 12 {
		t.Fatalf("plan %v, %d events, summary %v", got.plan, len(got.events), got.summary)
	}

	// Sending on, STARTTLS with the mailbox's CA: the four SMTP steps follow and pass.
	ca := testutil.NewCA(t)
	smtp := smtptest.Start(t, smtptest.Options{TLS: tlsConfig(ca.Issue(t, "127.0.0.1", "localhost"))})
	smtp.AddUser(imapUser, imapPass)
	mb := sendingMailbox(imap, smtp, "acme")
	mb.SmtpSecurity, mb.CaPem = mailintakev1.Security_SECURITY_STARTTLS, string(ca.PEM)
	got, err = streamTest(t, e, e.admin, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: mb}})
	if err != nil {
		t.Fatal(err)
	}
	got.checkOrder(t)
	if len(got.plan) != 10 || !got.summary.GetOk() {
		t.Fatalf("plan %v, summary %v", got.plan, got.summary)
	}
	for k, want := range map[mailintakev1.TestStepKind]string{
		mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT: "greeting: ",
		mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_TLS:     "STARTTLS, TLS 1.",
		mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_EHLO:    "EHLO ",
		mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH:    "PLAIN as " + imapUser,
	} {
		if d := got.step(k).GetDetail(); !strings.Contains(d, want) {
			t.Errorf("%v detail %q, want %q in it", k, d, want)
		}
	}
	if n := len(smtp.Auths()); n != 1 {
		t.Errorf("%d logins at the SMTP server, want 1", n)
	}
	if n := len(smtp.Messages()); n != 0 {
		t.Errorf("the test sent %d messages", n)
	}

	// TestConnection answers the same steps at once.
	resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}})
	if err != nil || !resp.GetOk() || len(resp.GetSteps()) != 10 || resp.GetSteps()[9].GetKind() != mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH {
		t.Fatalf("TestConnection = %v, %v", resp, err)
	}

	// Implicit TLS (465): the greeting comes after the handshake, in the EHLO step.
	implicit := smtptest.Start(t, smtptest.Options{TLS: tlsConfig(ca.Issue(t, "127.0.0.1", "localhost")), ImplicitTLS: true})
	implicit.AddUser(imapUser, imapPass)
	mb = sendingMailbox(imap, implicit, "acme")
	mb.SmtpSecurity, mb.CaPem = mailintakev1.Security_SECURITY_TLS, string(ca.PEM)
	got, err = streamTest(t, e, e.admin, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: mb}})
	if err != nil {
		t.Fatal(err)
	}
	got.checkOrder(t)
	if !got.summary.GetOk() || !strings.Contains(got.step(mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_EHLO).GetDetail(), "greeting: ") {
		t.Errorf("implicit TLS: %v", got.summary)
	}
}

func TestConnectionTestSMTPFailures(t *testing.T) {
	e := newEnv(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	ca := testutil.NewCA(t)
	other := testutil.NewCA(t)

	wrongPassword := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	wrongPassword.AddUser(imapUser, "not the mailbox's password")
	disabled := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	disabled.AddUser(imapUser, imapPass)
	disabled.Inject(smtptest.Fault{Step: smtptest.StepAuth, Code: 535, Enhanced: "5.7.139",
		Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."})
	untrusted := smtptest.Start(t, smtptest.Options{TLS: tlsConfig(other.Issue(t, "127.0.0.1", "localhost"))})
	untrusted.AddUser(imapUser, imapPass)

	cases := []struct {
		name   string
		srv    *smtptest.Server
		sec    mailintakev1.Security
		step   mailintakev1.TestStepKind
		want   []string
		reason mailintakev1.AuthFailureReason
	}{
		{"wrong password", wrongPassword, mailintakev1.Security_SECURITY_NONE, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH,
			[]string{"535", "check the user name and password"}, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS},
		{"SMTP AUTH disabled", disabled, mailintakev1.Security_SECURITY_NONE, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH,
			[]string{"535 5.7.139", "Set-CASMailbox"}, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID},
		{"untrusted certificate", untrusted, mailintakev1.Security_SECURITY_STARTTLS, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_TLS,
			[]string{"not signed by a trusted authority"}, 0},
		{"nothing listening", nil, mailintakev1.Security_SECURITY_NONE, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT,
			[]string{"refused"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mb *mailintakev1.Mailbox
			if c.srv != nil {
				mb = sendingMailbox(imap, c.srv, "acme")
			} else {
				mb = sendingMailbox(imap, wrongPassword, "acme")
				mb.SmtpPort = 1
			}
			mb.SmtpSecurity, mb.CaPem = c.sec, string(ca.PEM)
			got, err := streamTest(t, e, e.admin, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: mb}})
			if err != nil {
				t.Fatal(err)
			}
			got.checkOrder(t)
			if got.summary.GetOk() {
				t.Fatal("the test passed")
			}
			for _, k := range got.plan {
				st := got.step(k)
				switch {
				case k < mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT || k < c.step:
					if st.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_OK {
						t.Errorf("%v = %v, want OK", k, st)
					}
				case k == c.step:
					if st.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED {
						t.Errorf("%v = %v, want FAILED", k, st)
					}
					for _, w := range c.want {
						if !strings.Contains(st.GetError(), w) {
							t.Errorf("%v error %q, want %q in it", k, st.GetError(), w)
						}
					}
					if st.GetAuthFailure().GetReason() != c.reason {
						t.Errorf("%v auth failure %v, want reason %v", k, st.GetAuthFailure(), c.reason)
					}
				default:
					if st.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED {
						t.Errorf("%v after the failure = %v, want SKIPPED", k, st)
					}
				}
			}
		})
	}
}

func TestStreamConnectionTestAuthorization(t *testing.T) {
	e := newEnv(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	acme, globex := e.tenantToken("acme"), e.tenantToken("globex")
	id := e.create(acme, imapMailbox(imap, "")).GetId()

	// A tenant token tests its own mailbox by id; the test is logged as TestConnection's is.
	got, err := streamTest(t, e, acme, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: id}})
	if err != nil || !got.summary.GetOk() {
		t.Fatalf("own mailbox: %v, %v", got, err)
	}
	ev, err := e.mailbox.ListMailboxEvents(as(acme), &mailintakev1.ListMailboxEventsRequest{MailboxId: id})
	if err != nil || !strings.Contains(ev.String(), "connection test passed") {
		t.Errorf("events = %v, %v", ev, err)
	}
	// Another tenant's mailbox is not found; another tenant's definition is refused; a request
	// without a target names the field.
	for _, c := range []struct {
		req  *mailintakev1.StreamConnectionTestRequest
		code codes.Code
		text string
	}{
		{&mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: id}}, codes.NotFound, ""},
		{&mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: imapMailbox(imap, "acme")}}, codes.PermissionDenied, `tenant "acme"`},
		{&mailintakev1.StreamConnectionTestRequest{}, codes.InvalidArgument, "target"},
	} {
		_, err := streamTest(t, e, globex, c.req)
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%v as globex = %v, want %v naming %q", c.req, err, c.code, c.text)
		}
	}
}
