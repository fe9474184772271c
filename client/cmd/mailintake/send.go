package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// sendFlags are `mailintake send`'s flags.
type sendFlags struct {
	mailbox, subject, inReplyTo, htmlFile, rawFile, from, key string
	to, cc, bcc, attach, references                           []string
	wait                                                      bool
	waitTimeout                                               time.Duration
}

// maxSendInput bounds what send reads (a body, a raw message, each attached file): the server
// sends at most 36 MiB.
const maxSendInput = 36 << 20

// newIdempotencyKey returns a random key for a send that was given none.
func newIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// sendCmd is `mailintake send`: a message sent as a mailbox.
func (a *app) sendCmd() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send --mailbox ID --to ADDRESS --subject S < BODY",
		Short: "Send a message as a mailbox (a reply, or a new message)",
		Long: `Queue a message to be sent as a mailbox through its submission server (the mailbox needs
sending on: mailbox update ID --smtp-host HOST). The plain-text body is read from standard input;
--html-file adds an HTML body, --attach a file (repeatable). --raw-file sends a whole RFC 5322
message as it is (- for standard input) instead of composing one.

--in-reply-to makes the message a reply: give the id of a message the server delivered (the
server reads its Message-ID, References and subject from the mailbox) or the original's
Message-ID (with --reference for the ids of its References). In-Reply-To and References are set
so the message joins the thread, and without --subject the subject is "Re: " and the original's.

The outbound id and the Message-ID are printed (--json: the API's answer), with the idempotency
key. Without --idempotency-key a random one is made and printed: if the command fails or its
answer is lost, run it again with --idempotency-key KEY and the message is sent once, never twice.
The message is sent in the background; --wait waits until it is sent (exit 0) or failed (exit 1),
and 'mailintake outbound get ID' shows where it is.`,
		Example: `  echo 'The printer is fixed.' | mailintake --data-dir data send --mailbox MAILBOX_ID \
      --to customer@example.org --in-reply-to MAILBOX_ID:1712345678:42
  mailintake send --mailbox MAILBOX_ID --to a@example.org --cc b@example.org --subject 'Invoice' \
      --attach invoice.pdf --idempotency-key invoice-4711 --wait < body.txt
  mailintake send --mailbox MAILBOX_ID --raw-file message.eml`,
		Args:              noArgs("send takes no arguments: the body comes from standard input"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.send(cmd.Context(), cmd, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.mailbox, "mailbox", "", "the mailbox to send as (required)")
	fs.StringArrayVar(&f.to, "to", nil, "a recipient, `ADDRESS` or 'Name <address>' (repeatable)")
	fs.StringArrayVar(&f.cc, "cc", nil, "a copy recipient (repeatable)")
	fs.StringArrayVar(&f.bcc, "bcc", nil, "a blind copy recipient, never shown in the message (repeatable)")
	fs.StringVar(&f.subject, "subject", "", "the subject (a reply without one: Re: and the original's)")
	fs.StringVar(&f.inReplyTo, "in-reply-to", "", "answer a delivered message (its `ID`, MAILBOX:UIDVALIDITY:UID) or a Message-ID (<id@host>)")
	fs.StringArrayVar(&f.references, "reference", nil, "with a Message-ID in --in-reply-to: an id of the original's References (repeatable)")
	fs.StringArrayVar(&f.attach, "attach", nil, "attach a `FILE` (repeatable)")
	fs.StringVar(&f.htmlFile, "html-file", "", "an HTML body from a `FILE` (with the text body from standard input)")
	fs.StringVar(&f.rawFile, "raw-file", "", "send this RFC 5322 `FILE` as it is (- for standard input) instead of composing")
	fs.StringVar(&f.from, "from", "", "the From address (send-as, e.g. a shared mailbox; default: the mailbox's)")
	fs.StringVar(&f.key, "idempotency-key", "", "the key that makes a repeated command send once (default: a random one, printed)")
	fs.BoolVar(&f.wait, "wait", false, "wait until the message is sent (exit 0), or failed or unknown (exit 1)")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 2*time.Minute, "how long --wait waits")
	_ = cmd.RegisterFlagCompletionFunc("mailbox", a.completeMailboxID)
	return cmd
}

// readLimited reads at most maxSendInput bytes of r, naming what in the error.
func readLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSendInput+1))
	if err != nil {
		return nil, usagef("%s: %v", what, err)
	}
	if len(b) > maxSendInput {
		return nil, usagef("%s is larger than %d bytes", what, maxSendInput)
	}
	return b, nil
}

func readFile(path, what string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, usagef("%s: %v", what, err)
	}
	defer fh.Close()
	return readLimited(fh, what+" "+path)
}

// request builds the SendMessage request from the flags and standard input.
func (a *app) sendRequest(f *sendFlags) (*mailintakev1.SendMessageRequest, error) {
	if f.mailbox == "" {
		return nil, usagef("send needs --mailbox ID")
	}
	req := &mailintakev1.SendMessageRequest{MailboxId: f.mailbox, IdempotencyKey: f.key, From: f.from}
	if f.rawFile != "" {
		if len(f.to)+len(f.cc)+len(f.bcc) > 0 || f.subject != "" || f.htmlFile != "" || len(f.attach) > 0 || f.inReplyTo != "" || f.from != "" {
			return nil, usagef("--raw-file sends the message as it is: --to, --cc, --bcc, --subject, --html-file, --attach, --in-reply-to and --from are for a composed message")
		}
		var raw []byte
		var err error
		if f.rawFile == "-" {
			raw, err = readLimited(a.stdin, "standard input")
		} else {
			raw, err = readFile(f.rawFile, "--raw-file")
		}
		if err != nil {
			return nil, err
		}
		req.Content = &mailintakev1.SendMessageRequest_Raw{Raw: raw}
		return req, nil
	}
	if len(f.to)+len(f.cc)+len(f.bcc) == 0 {
		return nil, usagef("send needs a recipient: --to ADDRESS (or --cc, --bcc)")
	}
	d := &mailintakev1.Draft{To: f.to, Cc: f.cc, Bcc: f.bcc, Subject: f.subject}
	if fh, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(fh.Fd())) {
		fmt.Fprintln(a.stderr, "Type the message; end it with Ctrl-D.")
	}
	body, err := readLimited(a.stdin, "standard input")
	if err != nil {
		return nil, err
	}
	d.TextBody = string(body)
	if f.htmlFile != "" {
		html, err := readFile(f.htmlFile, "--html-file")
		if err != nil {
			return nil, err
		}
		d.HtmlBody = string(html)
	}
	for _, p := range f.attach {
		data, err := readFile(p, "--attach")
		if err != nil {
			return nil, err
		}
		d.Attachments = append(d.Attachments, &mailintakev1.OutboundAttachment{Filename: filepath.Base(p), Data: data})
	}
	switch irt := strings.TrimSpace(f.inReplyTo); {
	case irt == "":
		if len(f.references) > 0 {
			return nil, usagef("--reference goes with --in-reply-to MESSAGE-ID")
		}
	case strings.Contains(irt, "@"):
		req.InReplyTo = &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_RfcMessageId{RfcMessageId: irt}, References: f.references}
	default:
		if len(f.references) > 0 {
			return nil, usagef("--reference goes with a Message-ID in --in-reply-to: a delivered message's references are read from it")
		}
		req.InReplyTo = &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_DeliveredMessageId{DeliveredMessageId: irt}}
	}
	req.Content = &mailintakev1.SendMessageRequest_Draft{Draft: d}
	return req, nil
}

func (a *app) send(ctx context.Context, cmd *cobra.Command, f *sendFlags) error {
	req, err := a.sendRequest(f)
	if err != nil {
		return err
	}
	generated := req.IdempotencyKey == ""
	if generated {
		req.IdempotencyKey = newIdempotencyKey()
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	out := mailintakev1.NewOutboundServiceClient(cl.Conn())
	rctx, cancel := a.rpcCtx(ctx)
	resp, err := out.SendMessage(rctx, req)
	cancel()
	if err != nil {
		if generated {
			// The call may have reached the server: the same key makes a retry safe.
			fmt.Fprintf(a.stderr, "mailintake: to try again without sending twice, add --idempotency-key %s\n", req.IdempotencyKey)
		}
		return err
	}
	m := resp.GetOutboundMessage()
	if f.wait {
		if m, err = a.waitOutbound(ctx, out, m, f.waitTimeout); err != nil {
			return err
		}
	}
	if a.g.json {
		resp.OutboundMessage = m
		if err := a.printJSON(resp); err != nil {
			return err
		}
	} else {
		verb := "queued"
		if resp.GetReplayed() {
			verb = "already queued (the same idempotency key and content: not sent again)"
		}
		fmt.Fprintf(a.stdout, "%s %s\n", verb, m.GetId())
		fmt.Fprintf(a.stdout, "message-id <%s>\n", m.GetMessageId())
		fmt.Fprintf(a.stdout, "idempotency key %s\n", m.GetIdempotencyKey())
		if f.wait || resp.GetReplayed() {
			fmt.Fprintf(a.stdout, "state %s\n", stateName(m.GetState()))
		}
		for _, w := range m.GetWarnings() {
			fmt.Fprintf(a.stderr, "mailintake: warning: %s\n", w)
		}
	}
	if f.wait && m.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_SENT {
		return &failure{msg: fmt.Sprintf("message %s is %s: %s", m.GetId(), stateName(m.GetState()), m.GetError().GetExplanation())}
	}
	return nil
}

// waitOutbound polls a message until it leaves QUEUED and SENDING, or timeout passes.
func (a *app) waitOutbound(ctx context.Context, out mailintakev1.OutboundServiceClient, m *mailintakev1.OutboundMessage, timeout time.Duration) (*mailintakev1.OutboundMessage, error) {
	deadline := time.Now().Add(timeout)
	for {
		switch m.GetState() {
		case mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED, mailintakev1.OutboundState_OUTBOUND_STATE_SENDING:
		default:
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		rctx, cancel := a.rpcCtx(ctx)
		r, err := out.GetOutboundMessage(rctx, &mailintakev1.GetOutboundMessageRequest{Id: m.GetId()})
		cancel()
		if err != nil {
			return nil, err
		}
		m = r.GetOutboundMessage()
	}
}

// stateName is an outbound state as the CLI shows it ("sent").
func stateName(s mailintakev1.OutboundState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "OUTBOUND_STATE_"))
}
