package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/web/apiconn"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// testTimeout bounds a connection test (DNS, TCP, TLS, greeting, sign-in with the provider,
// folder).
const testTimeout = 2 * time.Minute

// testRun is a connection test the page started for a session. It runs in the background
// while the page shows its checklist and asks for its progress.
type testRun struct {
	ID        string
	MailboxID string
	started   time.Time

	mu   sync.Mutex
	done bool
	resp *mailintakev1.TestConnectionResponse
	err  error
}

// maxRuns is how many tests a session keeps for its pages.
const maxRuns = 10

// startTest starts a connection test of a saved mailbox as the session's token and returns
// its id.
func (h *Handler) startTest(s *session, mailboxID string) string {
	run := &testRun{ID: randomID(), MailboxID: mailboxID, started: time.Now()}
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
		resp, err := h.mailboxes.TestConnection(apiconn.WithToken(ctx, token),
			&mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Id{Id: mailboxID}})
		run.mu.Lock()
		run.done, run.resp, run.err = true, resp, err
		run.mu.Unlock()
	}()
	return run.ID
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
	Step     string // dns, tcp, tls, greeting, auth, select
	Result   string // pass, fail, skip, running
	Mark     string
	Sentence string
	Action   string
	Took     string
}

var stepOrder = []mailintakev1.TestStepKind{mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, mailintakev1.TestStepKind_TEST_STEP_KIND_TCP,
	mailintakev1.TestStepKind_TEST_STEP_KIND_TLS, mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING, mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH,
	mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT}

// stepWords are each step's name, what it says while it runs, when it passed and when it failed.
var stepWords = map[mailintakev1.TestStepKind]struct{ name, running, pass, fail string }{
	mailintakev1.TestStepKind_TEST_STEP_KIND_DNS:      {"DNS", "Looking up the server's address…", "Found the server's address", "Could not find the server's address"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_TCP:      {"Connection", "Connecting to the server…", "Connected to the server", "Could not connect to the server"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_TLS:      {"Encryption", "Setting up encryption…", "Encryption", "Encryption failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING: {"Greeting", "Waiting for the server's greeting…", "The server greeted", "The server's greeting failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH:     {"Sign-in", "Signing in…", "Signed in", "Sign-in failed"},
	mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT:   {"Folder", "Opening the folder…", "Opened the folder", "Could not open the folder"},
}

func stepName(k mailintakev1.TestStepKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "TEST_STEP_KIND_"))
}

// view renders the run's state. The API answers a test as a whole: until it has, every step
// shows as running.
func (run *testRun) view(interactive bool) *checklistView {
	run.mu.Lock()
	defer run.mu.Unlock()
	v := &checklistView{MailboxID: run.MailboxID, RunID: run.ID, Running: !run.done}
	got := map[mailintakev1.TestStepKind]*mailintakev1.TestStep{}
	for _, st := range run.resp.GetSteps() {
		got[st.GetKind()] = st
	}
	for _, k := range stepOrder {
		words := stepWords[k]
		sv := stepView{Step: stepName(k)}
		st := got[k]
		switch {
		case !run.done:
			sv.Result, sv.Mark, sv.Sentence = "running", "…", words.running
		case st == nil || st.GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED:
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
		if st != nil && st.GetDuration() != nil && st.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED {
			sv.Took = fmt.Sprintf("%d ms", st.GetDuration().AsDuration().Milliseconds())
		}
		v.Steps = append(v.Steps, sv)
	}
	switch {
	case !run.done:
		v.Summary = "Testing the connection…"
	case run.err != nil:
		v.Summary = "The test could not run: " + status.Convert(run.err).Message()
	case run.resp.GetOk():
		v.OK = true
		v.Summary = "Every step passed: the mailbox can connect."
	default:
		v.Summary = "The test failed."
		for _, sv := range v.Steps {
			if sv.Result == "fail" {
				v.Summary = "The test failed at the step “" + stepWords[stepOrder[indexOf(sv.Step)]].name + "”."
				break
			}
		}
	}
	return v
}

func indexOf(step string) int {
	for i, k := range stepOrder {
		if stepName(k) == step {
			return i
		}
	}
	return 0
}
