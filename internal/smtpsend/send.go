package smtpsend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/emersion/go-smtp"
)

// Result is an accepted message.
type Result struct {
	// QueueID is the server's id for the message, from its reply (see QueueID); "" when the
	// reply names none.
	QueueID string
	// Code, Enhanced and Text are the server's reply to the final dot.
	Code     int
	Enhanced string
	Text     string
	// DSN says delivery status notifications were asked for (RET=HDRS, NOTIFY=FAILURE,DELAY,
	// and ENVID when the envelope has an id): the server offers DSN.
	DSN bool
	// UTF8 says the message went with SMTPUTF8.
	UTF8 bool
}

// Send runs one mail transaction: MAIL FROM, RCPT TO for every recipient, DATA. msg is the
// whole message (Outgoing.Bytes). A failure is an *Error whose Kind says whether anything may
// have been accepted. Every recipient must be accepted: when the server refuses any, the
// transaction is reset before DATA and nothing is sent (Step StepRcpt, Recipients lists them;
// Permanent when any refusal is 5xx), because a message that reached only some recipients
// cannot be completed later without sending it twice to the others.
func (c *Conn) Send(ctx context.Context, env Envelope, msg []byte) (*Result, error) {
	res, e := c.send(ctx, env, msg)
	if e != nil {
		return nil, e
	}
	return res, nil
}

func (c *Conn) send(ctx context.Context, env Envelope, msg []byte) (*Result, *Error) {
	if c.broken {
		return nil, &Error{Kind: Temporary, Step: StepMail, Err: errBroken, Explanation: errBroken.Error() + "; " + nothingSent}
	}
	if e := checkEnvelope(env, msg); e != nil {
		return nil, e
	}
	res := &Result{}
	opts := &smtp.MailOptions{Size: wireSize(msg)}
	if needsUTF8(env) {
		if ok, _ := c.c.Extension("SMTPUTF8"); !ok {
			return nil, &Error{Kind: Permanent, Step: StepMail, Explanation: "an address has characters beyond ASCII and the server does not offer SMTPUTF8: use an ASCII address"}
		}
		opts.UTF8 = true
	} else if ok, _ := c.c.Extension("SMTPUTF8"); ok && headerHas8Bit(msg) {
		opts.UTF8 = true
	}
	res.UTF8 = opts.UTF8
	if limit, ok := c.c.MaxMessageSize(); ok && limit > 0 && opts.Size > int64(limit) {
		return nil, &Error{Kind: Permanent, Step: StepMail, Explanation: fmt.Sprintf(
			"the message is %d bytes and the server accepts at most %d (SIZE): send fewer or smaller attachments (or a link to the file)", opts.Size, limit)}
	}
	var rcptOpts *smtp.RcptOptions
	if ok, _ := c.c.Extension("DSN"); ok {
		res.DSN = true
		opts.Return = smtp.DSNReturnHeaders
		if validEnvelopeID(env.ID) {
			opts.EnvelopeID = env.ID
		}
		rcptOpts = &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}}
	}

	var e *Error
	c.guard(ctx, func() error {
		e = c.transaction(ctx, env, opts, rcptOpts, msg, res)
		return nil
	})
	if e != nil {
		return nil, e
	}
	return res, nil
}

// transaction runs MAIL, RCPT and DATA.
func (c *Conn) transaction(ctx context.Context, env Envelope, opts *smtp.MailOptions, rcptOpts *smtp.RcptOptions, msg []byte, res *Result) *Error {
	if err := c.c.Mail(env.From, opts); err != nil {
		return c.stepError(ctx, StepMail, err)
	}
	var refused []RecipientError
	for _, to := range env.To {
		err := c.c.Rcpt(to, rcptOpts)
		if err == nil {
			continue
		}
		code, enh, text, ok := smtpReply(err)
		if !ok || code == 421 {
			return c.stepError(ctx, StepRcpt, err)
		}
		refused = append(refused, RecipientError{Address: to, Code: code, Enhanced: enh, Text: text})
	}
	if len(refused) > 0 {
		if err := c.c.Reset(); err != nil {
			c.broken = true
		}
		e := &Error{Kind: Temporary, Step: StepRcpt, Recipients: refused, Code: refused[0].Code, Enhanced: refused[0].Enhanced, Text: refused[0].Text,
			Explanation: explainRecipients(refused, len(env.To))}
		for _, r := range refused {
			if r.Code >= 500 {
				e.Kind = Permanent
			}
		}
		return e
	}
	w, err := c.c.Data()
	if err != nil {
		return c.stepError(ctx, StepData, err)
	}
	c.wire.startData(c.target.CommandTimeout)
	defer c.wire.endData()
	if _, err := io.Copy(w, bytes.NewReader(msg)); err != nil {
		c.broken = true
		return connError(ctx, c.target, StepData, err)
	}
	c.wire.startClosing()
	resp, err := w.CloseWithResponse()
	if err == nil {
		res.Code = 250
		res.Enhanced, res.Text = splitEnhanced(resp.StatusText)
		res.Text = oneLine(res.Text)
	} else if code, enh, text, ok := smtpReply(err); ok && code >= 200 && code < 300 {
		res.Code, res.Enhanced, res.Text = code, enh, text // an odd success code: still accepted
	} else {
		return c.finalError(ctx, err)
	}
	res.QueueID = QueueID(res.Text)
	return nil
}

// stepError classifies a failure of MAIL, RCPT or the DATA command (before any of the message
// was written).
func (c *Conn) stepError(ctx context.Context, step StepKind, err error) *Error {
	e := replyError(ctx, c.target, step, err)
	if e.Code == 0 || e.Code == 421 || c.c.Reset() != nil {
		c.broken = true
	}
	return e
}

// finalError classifies a failure after the whole message was written: a reply is the
// server's verdict; otherwise the final dot may have arrived (Unknown) unless writing it failed.
func (c *Conn) finalError(ctx context.Context, err error) *Error {
	if code, enh, text, ok := smtpReply(err); ok {
		if code == 421 {
			c.broken = true
		}
		return &Error{Kind: kindOfCode(code), Step: StepEndOfData, Code: code, Enhanced: enh, Text: text, Explanation: explain(StepEndOfData, code, enh, text)}
	}
	c.broken = true
	if !c.wire.dotMayHaveArrived() {
		e := connError(ctx, c.target, StepData, err)
		e.Explanation = "the connection failed while the end of the message was written, so the server cannot have accepted it; it can be sent again"
		return e
	}
	cause := fmt.Sprintf("the connection broke (%v)", err)
	if ctx.Err() != nil {
		cause = "the send was cancelled"
	} else if isTimeout(err) {
		cause = fmt.Sprintf("no answer came within %s", c.target.FinalTimeout)
	}
	return &Error{Kind: Unknown, Step: StepEndOfData, Err: err, Explanation: explainUnknown(c.target, cause)}
}

// Send connects to t, logs in with cred (none when nil: a relay that takes mail without a
// login), sends the message and says QUIT: Dial, Conn.Authenticate and Conn.Send in one call.
func Send(ctx context.Context, t Target, cred *Credential, env Envelope, msg []byte) (*Result, error) {
	if e := checkEnvelope(env, msg); e != nil {
		return nil, e
	}
	c, err := Dial(ctx, t, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if cred != nil {
		if err := c.Authenticate(ctx, *cred); err != nil {
			c.Quit()
			return nil, err
		}
	}
	res, err := c.Send(ctx, env, msg)
	if err == nil || KindOf(err) == Permanent {
		c.Quit() // its failure changes nothing: the server has answered
	}
	return res, err
}

// headerHas8Bit reports whether the message's header has bytes beyond ASCII (RFC 6532).
func headerHas8Bit(msg []byte) bool {
	end := bytes.Index(msg, []byte("\n\r\n"))
	if e2 := bytes.Index(msg, []byte("\n\n")); end < 0 || (e2 >= 0 && e2 < end) {
		end = e2
	}
	if end < 0 {
		end = len(msg)
	}
	for _, b := range msg[:end] {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

// wireSize is the message's size with every line ending a CRLF, as it goes on the wire (without
// dot-stuffing, as RFC 1870 counts).
func wireSize(msg []byte) int64 {
	n := int64(len(msg))
	for i, b := range msg {
		if b == '\n' && (i == 0 || msg[i-1] != '\r') {
			n++
		}
	}
	return n
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
