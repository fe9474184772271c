package smtpsend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

func TestRefusalsClassified(t *testing.T) {
	for _, c := range []struct {
		at        smtptest.Step
		code      int
		enh, text string
		kind      Kind
		step      StepKind
		says      string
	}{
		{smtptest.StepGreeting, 554, "5.3.2", "No SMTP service here", Permanent, StepGreeting, "refused it for good"},
		{smtptest.StepGreeting, 421, "4.3.2", "Too many connections", Temporary, StepGreeting, "at the same time"},
		{smtptest.StepHello, 421, "4.7.0", "Try again later, closing connection", Temporary, StepHello, "closing the connection"},
		{smtptest.StepMail, 550, "5.7.60", "SMTP; Client does not have permissions to send as this sender", Permanent, StepMail, "Send As"},
		{smtptest.StepMail, 530, "5.7.57", "Client not authenticated to send mail", Permanent, StepMail, "wants a login"},
		{smtptest.StepMail, 432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded", Temporary, StepMail, "lower the number of sends"},
		{smtptest.StepMail, 421, "4.4.2", "Connection dropped due to timeout", Temporary, StepMail, "closing the connection"},
		{smtptest.StepMail, 452, "4.3.1", "Insufficient system resources", Temporary, StepMail, "sent again later"},
		{smtptest.StepMail, 553, "5.1.8", "Sender address rejected", Permanent, StepMail, "refused the sender address"},
		{smtptest.StepEndOfData, 554, "5.2.252", "SendAsDenied; agent@example.com not allowed to send as support@example.com", Permanent, StepEndOfData, "Add-RecipientPermission"},
		{smtptest.StepEndOfData, 554, "5.2.0", "STOREDRV.Submission.Exception:SubmissionQuotaExceededException", Permanent, StepEndOfData, "daily sending limit"},
		{smtptest.StepEndOfData, 432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded", Temporary, StepEndOfData, "lower the number of sends"},
		{smtptest.StepEndOfData, 552, "5.3.4", "Message size exceeds fixed maximum message size", Permanent, StepEndOfData, "larger than the server accepts"},
		{smtptest.StepEndOfData, 451, "4.3.0", "Mail server temporarily rejected message", Temporary, StepEndOfData, "sent again later"},
		{smtptest.StepEndOfData, 554, "5.6.0", "Invalid message content", Permanent, StepEndOfData, "format or content"},
		{smtptest.StepEndOfData, 550, "5.7.708", "Service unavailable. Access denied, traffic not accepted from this IP", Permanent, StepEndOfData, "blocked the tenant"},
		{smtptest.StepData, 554, "5.3.0", "Transaction failed", Permanent, StepEndOfData, "refused it for good"},
	} {
		srv, target := startServer(t, StartTLS, smtptest.Options{})
		srv.Inject(smtptest.Fault{Step: c.at, Code: c.code, Enhanced: c.enh, Text: c.text})
		e := sendErr(t, target, password, testMessage(t))
		name := c.at + " " + smtptest.Step(c.enh)
		if e.Kind != c.kind || e.Step != c.step || e.Code != c.code || e.Enhanced != c.enh || e.Text != c.text {
			t.Errorf("%s: got %v (kind %v step %v code %d enhanced %q text %q)", name, e, e.Kind, e.Step, e.Code, e.Enhanced, e.Text)
			continue
		}
		wantContains(t, string(name)+" explanation", e.Explanation, c.says)
		if len(srv.Accepted()) != 0 {
			t.Errorf("%s: the server accepted the message", name)
		}
	}
}

func TestRefusedRecipientsStopTheSend(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepRcpt, Recipient: "nobody@example.org", Code: 550, Enhanced: "5.1.1", Text: "User unknown"})
	srv.Inject(smtptest.Fault{Step: smtptest.StepRcpt, Recipient: "full@example.org", Code: 452, Enhanced: "4.2.2", Text: "Mailbox full"})
	o, err := Compose(Draft{From: "support@example.com", To: []string{"a@example.org", "nobody@example.org"}, Cc: []string{"full@example.org"}, Subject: "x", Text: "y"})
	if err != nil {
		t.Fatal(err)
	}
	e := sendErr(t, target, password, o)
	if e.Kind != Permanent || e.Step != StepRcpt || len(e.Recipients) != 2 {
		t.Fatalf("got %v", e)
	}
	if r := e.Recipients[0]; r.Address != "nobody@example.org" || r.Code != 550 || r.Enhanced != "5.1.1" || r.Text != "User unknown" {
		t.Errorf("refusal %+v", r)
	}
	wantContains(t, "explanation", e.Explanation, "refused 2 of 3 recipients")
	wantContains(t, "explanation", e.Explanation, "<nobody@example.org>: 550 5.1.1 User unknown (the recipient's mailbox does not exist")
	if len(srv.Messages()) != 0 || strings.Contains(srv.Transcript(), "\nDATA") {
		t.Error("DATA sent despite refused recipients")
	}

	// Only temporary refusals: Temporary, and on the same connection the next send works.
	srv.ClearFaults()
	srv.Inject(smtptest.Fault{Step: smtptest.StepRcpt, Recipient: "full@example.org", Code: 452, Enhanced: "4.2.2", Text: "Mailbox full", Times: 1})
	c, err := Dial(t.Context(), target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(t.Context(), *password); err != nil {
		t.Fatal(err)
	}
	o2, _ := Compose(Draft{From: "support@example.com", To: []string{"a@example.org", "full@example.org"}, Subject: "x", Text: "y"})
	if _, err := c.Send(t.Context(), o2.Envelope("out-2"), o2.Bytes); KindOf(err) != Temporary {
		t.Fatalf("got %v", err)
	}
	if _, err := c.Send(t.Context(), o2.Envelope("out-2"), o2.Bytes); err != nil {
		t.Fatalf("second send on the connection: %v", err)
	}
	if n := len(srv.Accepted()); n != 1 {
		t.Errorf("%d accepted", n)
	}
}

func TestCutBeforeDataIsTemporaryAndRetrySendsOnce(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepRcpt, Action: smtptest.Cut, Times: 1})
	o := testMessage(t)
	e := sendErr(t, target, password, o)
	if e.Kind != Temporary || e.Step != StepRcpt || e.Code != 0 {
		t.Fatalf("got %v", e)
	}
	wantContains(t, "explanation", e.Explanation, "nothing was accepted")
	if _, err := Send(t.Context(), target, password, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("the server received %d messages, want 1", n)
	}
}

func TestTemporaryThenAccepted(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Code: 451, Enhanced: "4.7.1", Text: "Try again later", Times: 1})
	o := testMessage(t)
	if e := sendErr(t, target, password, o); e.Kind != Temporary || !e.Retryable() {
		t.Fatalf("got %v", e)
	}
	if _, err := Send(t.Context(), target, password, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Accepted()); n != 1 {
		t.Errorf("%d accepted, want 1", n)
	}
}

func TestCutAfterTheFinalDotIsUnknown(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Cut})
	e := sendErr(t, target, password, testMessage(t))
	if e.Kind != Unknown || e.Step != StepEndOfData || e.Retryable() || KindOf(e) != Unknown {
		t.Fatalf("got %v", e)
	}
	wantContains(t, "explanation", e.Explanation, "may or may not have been accepted")
	wantContains(t, "explanation", e.Explanation, "not sent again automatically")
	if m := srv.Messages(); len(m) != 1 || m[0].Accepted {
		t.Errorf("server: %+v", m)
	}
}

func TestStallAfterTheFinalDotIsUnknownWithinTheDeadline(t *testing.T) {
	srv, target := startServer(t, TLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Stall})
	target.FinalTimeout = 300 * time.Millisecond
	start := time.Now()
	e := sendErr(t, target, password, testMessage(t))
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s", took)
	}
	if e.Kind != Unknown || e.Step != StepEndOfData {
		t.Fatalf("got %v", e)
	}
	wantContains(t, "explanation", e.Explanation, "no answer came within 300ms")
}

func TestStallsBeforeTheDotAreTemporaryWithinTheDeadline(t *testing.T) {
	for _, c := range []struct {
		at   smtptest.Step
		step StepKind
	}{{smtptest.StepGreeting, StepGreeting}, {smtptest.StepHello, StepHello}, {smtptest.StepAuth, StepAuth}, {smtptest.StepMail, StepMail}, {smtptest.StepRcpt, StepRcpt}} {
		srv, target := startServer(t, StartTLS, smtptest.Options{})
		srv.Inject(smtptest.Fault{Step: c.at, Action: smtptest.Stall})
		target.DialTimeout, target.CommandTimeout = 300*time.Millisecond, 300*time.Millisecond
		start := time.Now()
		e := sendErr(t, target, password, testMessage(t))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s: took %s", c.at, took)
		}
		if e.Kind != Temporary || e.Step != c.step {
			t.Errorf("%s: got %v", c.at, e)
			continue
		}
		wantContains(t, string(c.at)+" explanation", e.Explanation, "300ms")
	}
}

// A server that stops reading the message: each write has a deadline, however large the message.
func TestServerThatStopsReadingTheMessage(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepData, Action: smtptest.Stall})
	target.CommandTimeout = 300 * time.Millisecond
	big := strings.Repeat(strings.Repeat("x", 76)+"\r\n", 400000) // 31 MB, more than the socket buffers hold
	o, err := PrepareRaw([]byte("From: support@example.com\r\nTo: a@example.org\r\nSubject: big\r\n\r\n"+big), RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e := sendErr(t, target, password, o)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s", took)
	}
	if e.Kind != Temporary || e.Step != StepData {
		t.Fatalf("got %v", e)
	}
}

func TestCancelAfterTheFinalDotIsUnknown(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Stall})
	ctx, cancel := context.WithCancel(t.Context())
	o := testMessage(t)
	c, err := Dial(ctx, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(ctx, *password); err != nil {
		t.Fatal(err)
	}
	go func() {
		for len(srv.Messages()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err = c.Send(ctx, o.Envelope("out-1"), o.Bytes)
	if KindOf(err) != Unknown || !strings.Contains(err.Error(), "the send was cancelled before the server answered") {
		t.Fatalf("got %v", err)
	}
	// The connection is spent: a second send is refused before anything is written.
	if _, err := c.Send(t.Context(), o.Envelope("out-1"), o.Bytes); KindOf(err) != Temporary {
		t.Errorf("second send: %v", err)
	}
}
