package web

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// A running test shows each step as the stream left it: passed, running, or pending; the SMTP
// steps are listed from the start for a mailbox with sending on.
func TestChecklistShowsStepsAsTheyRun(t *testing.T) {
	run := &testRun{ID: "r", MailboxID: "m", sending: true, steps: map[mailintakev1.TestStepKind]*mailintakev1.TestStep{
		mailintakev1.TestStepKind_TEST_STEP_KIND_DNS: {Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK,
			Detail: "127.0.0.1", Duration: durationpb.New(2 * time.Millisecond)},
		mailintakev1.TestStepKind_TEST_STEP_KIND_TCP: {Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_TCP, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING},
	}}
	v := run.view(false)
	var got []string
	for _, s := range v.Steps {
		got = append(got, s.Step+"="+s.Result)
	}
	want := "dns=pass tcp=running tls=pending greeting=pending auth=pending select=pending " +
		"smtp-connect=pending smtp-tls=pending smtp-ehlo=pending smtp-auth=pending"
	if strings.Join(got, " ") != want || !v.Running || v.Steps[0].Took != "2 ms" || v.Steps[1].Sentence != "Connecting to the server…" {
		t.Errorf("running view: %v\n%+v", got, v)
	}
	// The server's plan wins over the page's guess.
	run.plan = []mailintakev1.TestStepKind{mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, mailintakev1.TestStepKind_TEST_STEP_KIND_TCP}
	if v := run.view(false); len(v.Steps) != 2 {
		t.Errorf("with the server's plan: %+v", v.Steps)
	}
}

// Save and Test of a mailbox with sending on: the checklist has the SMTP steps, passing with
// the right password and the sign-in for sending failing with smtpsend's sentence.
func TestSaveAndTestChecklistSMTP(t *testing.T) {
	e := newEnv(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	good := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	good.AddUser(imapUser, imapPass)
	disabled := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	disabled.AddUser(imapUser, imapPass)
	disabled.Inject(smtptest.Fault{Step: smtptest.StepAuth, Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."})
	u := e.signedIn(e.admin)
	for _, c := range []struct {
		srv  *smtptest.Server
		want map[string]string
	}{
		{good, map[string]string{"auth": "pass", "smtp-connect": "pass", "smtp-tls": "pass", "smtp-ehlo": "pass", "smtp-auth": "pass"}},
		{disabled, map[string]string{"auth": "pass", "smtp-ehlo": "pass", "smtp-auth": "fail"}},
	} {
		mb := imapMailbox(imap, "acme")
		mb.SendingEnabled, mb.SmtpHost, mb.SmtpPort, mb.SmtpSecurity = true, c.srv.Host, uint32(c.srv.Port), mailintakev1.Security_SECURITY_NONE
		id := e.createMailbox(e.admin, mb).GetId()
		resp, _ := u.noRedirect().Do(mustPost(t, e, "/mailboxes/"+id+"/test"))
		m := regexp.MustCompile(`test=([0-9a-f]+)`).FindStringSubmatch(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || m == nil {
			t.Fatalf("test: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		steps := waitChecklistOf(t, u, id, m[1], 10)
		for step, want := range c.want {
			if steps[step][0] != want {
				t.Errorf("%s: step %s = %v, want %s", c.srv.Addr(), step, steps[step], want)
			}
		}
		if c.srv == disabled && (!strings.Contains(steps["smtp-auth"][1], "Sign-in for sending failed") || !strings.Contains(steps["smtp-auth"][1], "5.7.139") ||
			!strings.Contains(steps["smtp-auth"][1], "Set-CASMailbox")) {
			t.Errorf("SMTP AUTH turned off: %q", steps["smtp-auth"][1])
		}
	}
}

// mustPost is a same-origin form post with no fields.
func mustPost(t *testing.T, e *env, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return req
}
