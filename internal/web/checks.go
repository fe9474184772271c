package web

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/web/apiconn"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// testTimeout bounds a connection test (DNS, TCP, TLS, greeting, sign-in with the provider,
// folder, and the SMTP steps when sending is on).
const testTimeout = 2 * time.Minute

// testRun is a connection test the page started for a session. It runs in the background,
// reading StreamConnectionTest, while the page shows its checklist and asks for its progress:
// each step shows as pending, running or ended as the stream says.
type testRun struct {
	ID        string
	MailboxID string
	started   time.Time

	mu sync.Mutex
	// plan is the steps the server said it runs; until it has, the steps of a test of a
	// mailbox with sending on (sending) or off.
	plan    []mailintakev1.TestStepKind
	sending bool
	// steps holds each step's last report: running, or ended.
	steps map[mailintakev1.TestStepKind]*mailintakev1.TestStep
	done  bool
	resp  *mailintakev1.TestConnectionResponse
	err   error
}

// maxRuns is how many tests a session keeps for its pages.
const maxRuns = 10

// startTest starts a connection test of a saved mailbox as the session's token and returns
// its id. sending says whether the mailbox sends (its SMTP steps are listed from the start).
func (h *Handler) startTest(s *session, mailboxID string, sending bool) string {
	run := &testRun{ID: randomID(), MailboxID: mailboxID, started: time.Now(), sending: sending,
		steps: map[mailintakev1.TestStepKind]*mailintakev1.TestStep{}}
	st := s.Data
	st.mu.Lock()
	st.runs[run.ID] = run
	st.order = append(st.order, run.ID)
	for len(st.order) > maxRuns {
		delete(st.runs, st.order[0])
		st.order = st.order[1:]
	}
	st.mu.Unlock()
	token := s.Token
	go func() {
		ctx, cancel := context.WithTimeout(h.opts.Context, testTimeout)
		defer cancel()
		resp, err := run.follow(apiconn.WithToken(ctx, token), h.mailboxes)
		run.mu.Lock()
		run.done, run.resp, run.err = true, resp, err
		run.mu.Unlock()
	}()
	return run.ID
}

// follow reads the test's stream into the run until its summary. A server without
// StreamConnectionTest (Unimplemented) is asked TestConnection, whose steps come at the end.
func (run *testRun) follow(ctx context.Context, c mailintakev1.MailboxServiceClient) (*mailintakev1.TestConnectionResponse, error) {
	req := &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: run.MailboxID}}
	return client.TestConnection(ctx, c, req, func(r *mailintakev1.StreamConnectionTestResponse) {
		run.mu.Lock()
		defer run.mu.Unlock()
		switch ev := r.GetEvent().(type) {
		case *mailintakev1.StreamConnectionTestResponse_Plan:
			run.plan = ev.Plan.GetSteps()
		case *mailintakev1.StreamConnectionTestResponse_Step:
			run.steps[ev.Step.GetKind()] = ev.Step
		}
	})
}

// run returns a session's test of the mailbox, or nil.
func (s *state) run(id, mailboxID string) *testRun {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[id]
	if r == nil || r.MailboxID != mailboxID {
		return nil
	}
	return r
}

// testProgress is the checklist of a running test, for htmx to refresh.
func (h *Handler) testProgress(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	run := s.Data.run(r.PathValue("run"), id)
	if run == nil {
		h.errorPage(w, r, s, http.StatusNotFound, "Not found: no such connection test (tests are kept for the session that ran them).")
		return
	}
	if !isHTMX(r) {
		h.redirect(w, r, "/mailboxes/"+url.PathEscape(id)+"/edit?test="+url.QueryEscape(run.ID))
		return
	}
	ctx, cancel := h.call(r, s)
	defer cancel()
	interactive := false
	if got, err := h.mailboxes.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id}); err == nil {
		if provs, err := h.listProviders(ctx); err == nil {
			for _, p := range provs {
				interactive = interactive || (p.GetName() == got.GetMailbox().GetAuthProvider() && p.GetInteractive())
			}
		}
	}
	h.fragment(w, "checklist", run.view(interactive))
}

// checklistView is a connection test as the page shows it.
type checklistView struct {
	MailboxID string
	RunID     string
	Running   bool
	OK        bool
	Summary   string
	Steps     []stepView
	// SignIn offers the device-code sign-in: the test failed for want of one.
	SignIn bool
}

// refresh reloads a page with a running test every second when JavaScript is off.
func (c *checklistView) refresh() int {
	if c != nil && c.Running {
		return 1
	}
	return 0
}

// stepView is one step of the checklist: data-step and data-result, and its sentence.
type stepView struct {
	Step     string // dns, tcp, tls, greeting, auth, select, smtp-connect, smtp-tls, smtp-ehlo, smtp-auth
	Result   string // pass, fail, skip, running, pending
	Mark     string
	Sentence string
	Action   string
	Took     string
}

// imapSteps and smtpSteps are the steps of a test before the server says its plan: the
// IMAP steps, then the SMTP steps of a mailbox with sending on.
var (
	imapSteps = []mailintakev1.TestStepKind{mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, mailintakev1.TestStepKind_TEST_STEP_KIND_TCP,
		mailintakev1.TestStepKind_TEST_STEP_KIND_TLS, mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING, mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH,
		mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT}
	smtpSteps = []mailintakev1.TestStepKind{mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_TLS,
		mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_EHLO, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH}
)

// stepWords are each step's name, what it says while it runs, when it passed and when it failed.
var stepWords = map[mailintakev1.TestStepKind]struct{ name, running, pass, fail string }{
	mailintakev1.TestStepKind_TEST_STEP_KIND_DNS:      {"DNS", "Looking up the server's address…", "Found the server's address", "Could not find the server's address"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_TCP:      {"Connection", "Connecting to the server…", "Connected to the server", "Could not connect to the server"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_TLS:      {"Encryption", "Setting up encryption…", "Encryption", "Encryption failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING: {"Greeting", "Waiting for the server's greeting…", "The server greeted", "The server's greeting failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH:     {"Sign-in", "Signing in…", "Signed in", "Sign-in failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT:   {"Folder", "Opening the folder…", "Opened the folder", "Could not open the folder"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_CONNECT: {"Outgoing server", "Connecting to the outgoing (SMTP) server…",
		"Connected to the outgoing (SMTP) server", "Could not connect to the outgoing (SMTP) server"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_TLS: {"Outgoing encryption", "Setting up encryption with the outgoing server…",
		"Outgoing encryption", "Encryption with the outgoing server failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_EHLO: {"Outgoing greeting", "Greeting the outgoing server (EHLO)…",
		"The outgoing server answered", "The outgoing server's greeting failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH: {"Sign-in for sending", "Signing in to send…", "Signed in to send", "Sign-in for sending failed"},
}

// stepName is a step's data-step: "dns", "smtp-auth".
func stepName(k mailintakev1.TestStepKind) string { return client.StepName(k) }

// view renders the run's state: each step as the stream last reported it (pending until it
// starts), or, once the test ended, as its summary has it.
func (run *testRun) view(interactive bool) *checklistView {
	run.mu.Lock()
	defer run.mu.Unlock()
	v := &checklistView{MailboxID: run.MailboxID, RunID: run.ID, Running: !run.done}
	plan := run.plan
	if plan == nil {
		plan = imapSteps
		if run.sending {
			plan = append(slices.Clone(imapSteps), smtpSteps...)
		}
	}
	got := maps.Clone(run.steps)
	if run.resp != nil {
		plan = nil
		for _, st := range run.resp.GetSteps() {
			got[st.GetKind()] = st
			plan = append(plan, st.GetKind())
		}
	}
	for _, k := range plan {
		words := stepWords[k]
		if words.name == "" {
			continue // a step this page does not know yet
		}
		sv := stepView{Step: stepName(k)}
		st := got[k]
		switch {
		case st == nil && !run.done:
			sv.Result, sv.Mark, sv.Sentence = "pending", "·", words.name+": waiting for the steps before it."
		case st.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING && !run.done:
			sv.Result, sv.Mark, sv.Sentence = "running", "…", words.running
		case st == nil || st.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED ||
			st.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING:
			sv.Result, sv.Mark, sv.Sentence = "skip", "–", words.name+": not checked, as an earlier step failed."
			if run.err != nil {
				sv.Sentence = words.name + ": not checked."
			}
		case st.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_OK:
			sv.Result, sv.Mark, sv.Sentence = "pass", "✓", words.pass
			if d := st.GetDetail(); d != "" {
				if strings.HasPrefix(strings.ToLower(d), strings.ToLower(words.pass)) {
					// The detail says it already ("signed in as …").
					sv.Sentence = strings.ToUpper(d[:1]) + d[1:]
				} else {
					sv.Sentence += ": " + d
				}
			}
			sv.Sentence = strings.TrimSuffix(sv.Sentence, ".") + "."
		default:
			sv.Result, sv.Mark, sv.Sentence = "fail", "✗", words.fail
			if e := st.GetError(); e != "" {
				sv.Sentence += ": " + e
			}
			sv.Sentence = strings.TrimSuffix(sv.Sentence, ".") + "."
			if af := st.GetAuthFailure(); af != nil {
				if af.GetMessage() != "" && !strings.Contains(sv.Sentence, af.GetMessage()) {
					sv.Sentence += " " + af.GetMessage()
				}
				sv.Action = af.GetAction()
				if af.GetReason() == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED && interactive {
					v.SignIn = true
				}
			}
		}
		if (sv.Result == "pass" || sv.Result == "fail") && st.GetDuration() != nil {
			sv.Took = fmt.Sprintf("%d ms", st.GetDuration().AsDuration().Milliseconds())
		}
		if sv.Result == "fail" && v.Summary == "" {
			v.Summary = "The test failed at the step “" + words.name + "”."
		}
		v.Steps = append(v.Steps, sv)
	}
	failed := v.Summary
	switch {
	case !run.done:
		v.Summary = "Testing the connection…"
	case run.err != nil:
		v.Summary = "The test could not run: " + status.Convert(run.err).Message()
	case run.resp.GetOk():
		v.OK = true
		v.Summary = "Every step passed: the mailbox can connect."
		if slices.Contains(plan, mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH) {
			v.Summary = "Every step passed: the mailbox can connect and send."
		}
	case failed != "":
		v.Summary = failed
	default:
		v.Summary = "The test failed."
	}
	return v
}
