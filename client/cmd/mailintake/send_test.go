package main

import (
	"context"
	"encoding/json"
	"google.golang.org/protobuf/types/known/timestamppb"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// fakeOutbound records SendMessage requests and answers with a queued message; a key it saw
// before is answered as a replay. GetOutboundMessage answers SENT (or FAILED for subject "fail").
type fakeOutbound struct {
	mailintakev1.UnimplementedOutboundServiceServer
	mu   sync.Mutex
	reqs []*mailintakev1.SendMessageRequest
	fail error
}

func (f *fakeOutbound) SendMessage(_ context.Context, req *mailintakev1.SendMessageRequest) (*mailintakev1.SendMessageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	replayed := false
	for _, r := range f.reqs {
		replayed = replayed || r.GetIdempotencyKey() == req.GetIdempotencyKey()
	}
	f.reqs = append(f.reqs, proto.CloneOf(req))
	return &mailintakev1.SendMessageResponse{Replayed: replayed, OutboundMessage: &mailintakev1.OutboundMessage{Id: "out-1", MessageId: "m1@example.com",
		IdempotencyKey: req.GetIdempotencyKey(), State: mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED, Subject: req.GetDraft().GetSubject()}}, nil
}

func (f *fakeOutbound) GetOutboundMessage(_ context.Context, req *mailintakev1.GetOutboundMessageRequest) (*mailintakev1.GetOutboundMessageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &mailintakev1.OutboundMessage{Id: req.GetId(), MessageId: "m1@example.com", State: mailintakev1.OutboundState_OUTBOUND_STATE_SENT, SmtpResponse: "250 2.0.0 OK"}
	if req.GetId() == "bounced-1" {
		m.State, m.BounceMessageId, m.BounceTime = mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED, "mb2:7:42", timestamppb.Now()
		m.BouncedRecipients = []*mailintakev1.BounceRecipient{{Address: "gone@customer.example", Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 user unknown"}}
		m.SentCopy = &mailintakev1.SentCopy{Folder: "Sent", Error: "the IMAP server refused: [TRYCREATE] no such mailbox"}
		return &mailintakev1.GetOutboundMessageResponse{OutboundMessage: m}, nil
	}
	if last := f.reqs[len(f.reqs)-1]; last.GetDraft().GetSubject() == "fail" {
		m.State = mailintakev1.OutboundState_OUTBOUND_STATE_FAILED
		m.Error = &mailintakev1.OutboundError{Kind: mailintakev1.OutboundErrorKind_OUTBOUND_ERROR_KIND_PERMANENT, Step: "end of data", Code: 554,
			EnhancedCode: "5.2.252", ServerText: "SendAsDenied", Explanation: "grant Send As"}
	}
	return &mailintakev1.GetOutboundMessageResponse{OutboundMessage: m}, nil
}

func (f *fakeOutbound) last() *mailintakev1.SendMessageRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func serveOutbound(t *testing.T, f *fakeOutbound) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	mailintakev1.RegisterOutboundServiceServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func runCLIWithInput(t *testing.T, addr, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	full := append([]string{"--addr", addr, "--token", adminToken, "--rpc-timeout", "10s"}, args...)
	code := run(context.Background(), full, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSendComposes(t *testing.T) {
	f := &fakeOutbound{}
	addr := serveOutbound(t, f)
	dir := t.TempDir()
	att := filepath.Join(dir, "report.pdf")
	html := filepath.Join(dir, "body.html")
	os.WriteFile(att, []byte("%PDF"), 0o600)
	os.WriteFile(html, []byte("<p>Fixed.</p>"), 0o600)
	code, out, errs := runCLIWithInput(t, addr, "Fixed.\n", "send", "--mailbox", "mb1", "--to", "a@example.org", "--to", "B <b@example.org>",
		"--cc", "c@example.org", "--bcc", "d@example.org", "--subject", "Ticket", "--attach", att, "--html-file", html,
		"--in-reply-to", "mb1:7:42", "--from", "Shared <shared@example.com>")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	req := f.last()
	d := req.GetDraft()
	if req.GetMailboxId() != "mb1" || strings.Join(d.GetTo(), "|") != "a@example.org|B <b@example.org>" || d.GetCc()[0] != "c@example.org" ||
		d.GetBcc()[0] != "d@example.org" || d.GetSubject() != "Ticket" || d.GetTextBody() != "Fixed.\n" || d.GetHtmlBody() != "<p>Fixed.</p>" ||
		len(d.GetAttachments()) != 1 || d.GetAttachments()[0].GetFilename() != "report.pdf" || string(d.GetAttachments()[0].GetData()) != "%PDF" ||
		req.GetInReplyTo().GetDeliveredMessageId() != "mb1:7:42" || req.GetFrom() != "Shared <shared@example.com>" {
		t.Errorf("request %v", req)
	}
	// A random key, printed so the command can be repeated safely.
	key := req.GetIdempotencyKey()
	if !strings.HasPrefix(key, "cli-") || len(key) < 20 {
		t.Errorf("key %q", key)
	}
	for _, want := range []string{"queued out-1\n", "message-id <m1@example.com>\n", "idempotency key " + key + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Repeated with the key: the server's replay is said.
	code, out, _ = runCLIWithInput(t, addr, "Fixed.\n", "send", "--mailbox", "mb1", "--to", "a@example.org", "--idempotency-key", key)
	if code != 0 || f.last().GetIdempotencyKey() != key || !strings.Contains(out, "not sent again") {
		t.Errorf("repeat: exit %d %q", code, out)
	}
	// A Message-ID with references; --json prints the API's answer.
	code, out, _ = runCLIWithInput(t, addr, "x", "--json", "send", "--mailbox", "mb1", "--to", "a@example.org", "--in-reply-to", "<orig@example.net>",
		"--reference", "<root@example.net>")
	var resp struct {
		OutboundMessage struct {
			ID string `json:"id"`
		} `json:"outboundMessage"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.OutboundMessage.ID != "out-1" {
		t.Errorf("--json: exit %d %q", code, out)
	}
	if irt := f.last().GetInReplyTo(); irt.GetRfcMessageId() != "<orig@example.net>" || irt.GetReferences()[0] != "<root@example.net>" {
		t.Errorf("in reply to %v", irt)
	}
	// Raw.
	raw := filepath.Join(dir, "m.eml")
	os.WriteFile(raw, []byte("From: a@example.com\r\nTo: b@example.com\r\n\r\nx\r\n"), 0o600)
	if code, _, errs := runCLIWithInput(t, addr, "", "send", "--mailbox", "mb1", "--raw-file", raw); code != 0 || !strings.HasPrefix(string(f.last().GetRaw()), "From: a@example.com") {
		t.Errorf("raw: exit %d %s", code, errs)
	}
	if code, _, _ := runCLIWithInput(t, addr, "From: a@example.com\r\n\r\nx", "send", "--mailbox", "mb1", "--raw-file", "-"); code != 0 || !strings.HasPrefix(string(f.last().GetRaw()), "From: a@example.com") {
		t.Errorf("raw from stdin: exit %d", code)
	}
}

func TestSendWaitAndFailures(t *testing.T) {
	f := &fakeOutbound{}
	addr := serveOutbound(t, f)
	code, out, _ := runCLIWithInput(t, addr, "x", "send", "--mailbox", "mb1", "--to", "a@example.org", "--subject", "ok", "--wait")
	if code != 0 || !strings.Contains(out, "state sent") {
		t.Errorf("--wait sent: exit %d %q", code, out)
	}
	code, _, errs := runCLIWithInput(t, addr, "x", "send", "--mailbox", "mb1", "--to", "a@example.org", "--subject", "fail", "--wait")
	if code != 1 || !strings.Contains(errs, "failed: grant Send As") {
		t.Errorf("--wait failed: exit %d %q", code, errs)
	}
	// A failed call prints the key to repeat it with.
	f.fail = status.Error(codes.Unavailable, "the store is unavailable")
	code, _, errs = runCLIWithInput(t, addr, "x", "send", "--mailbox", "mb1", "--to", "a@example.org")
	if code == 0 || !strings.Contains(errs, "add --idempotency-key cli-") {
		t.Errorf("failed call: exit %d %q", code, errs)
	}
	for _, args := range [][]string{
		{"send", "--to", "a@example.org"},
		{"send", "--mailbox", "mb1"},
		{"send", "--mailbox", "mb1", "--raw-file", "x.eml", "--to", "a@example.org"},
		{"send", "--mailbox", "mb1", "--to", "a@example.org", "--reference", "<a@b>"},
		{"send", "--mailbox", "mb1", "--to", "a@example.org", "--attach", "/does/not/exist"},
		{"outbound", "list", "--state", "lost"},
	} {
		if code, _, errs := runCLIWithInput(t, addr, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errs)
		}
	}
}

// outbound get shows a bounce: the state, the report's id and each failed recipient with its
// status and diagnostic; and the Sent copy's outcome.
func TestOutboundGetShowsBounce(t *testing.T) {
	addr := serveOutbound(t, &fakeOutbound{})
	code, stdout, stderr := runCLIWithInput(t, addr, "", "outbound", "get", "bounced-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	flat := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{"state: bounced", "(report mb2:7:42) failed: <gone@customer.example> 5.1.1 550 5.1.1 user unknown",
		`sent copy: not saved in "Sent": the IMAP server refused`} {
		if !strings.Contains(flat, want) {
			t.Errorf("missing %q in:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLIWithInput(t, addr, "", "outbound", "get", "bounced-1", "--json")
	if code != 0 || !strings.Contains(stdout, `"OUTBOUND_STATE_BOUNCED"`) || !strings.Contains(stdout, "gone@customer.example") {
		t.Errorf("--json: %d %s", code, stdout)
	}
}
