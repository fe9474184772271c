package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/smtpsend"
	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// outboundService implements OutboundService: it composes (or checks) the message, queues it in
// the store's outbox, and wakes the sender (internal/outbox), which sends it in the background.
type outboundService struct {
	mailintakev1.UnimplementedOutboundServiceServer
	s *Server
}

// Limits of SendMessage.
const (
	maxIdempotencyKey = 200
	// maxOutboundBytes bounds a composed or raw message (Exchange Online accepts 35 MB by
	// default, base64 attachments included). The API's requests are bounded a little above it
	// (maxRequestBytes, server.go).
	maxOutboundBytes = 36 << 20
	// maxOriginalHeader bounds the header read from a delivered original (in_reply_to).
	maxOriginalHeader = 256 << 10
)

// validKey reports whether an idempotency key is 1 to 200 printable ASCII characters.
func validKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestHash is what tells a retried SendMessage from another message under the same key: the
// SHA-256 of the request without its key, marshaled deterministically.
func requestHash(req *mailintakev1.SendMessageRequest) []byte {
	c := proto.CloneOf(req)
	c.IdempotencyKey = ""
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(b)
	return sum[:]
}

func (o *outboundService) SendMessage(ctx context.Context, req *mailintakev1.SendMessageRequest) (*mailintakev1.SendMessageResponse, error) {
	var v violations
	if !validKey(req.GetIdempotencyKey()) {
		v.add("idempotency_key", "is required: 1 to %d printable ASCII characters the caller chooses for this message (e.g. a UUID), the same when the call is repeated", maxIdempotencyKey)
	}
	switch req.GetContent().(type) {
	case nil:
		v.add("content", "give a draft (the server composes the message) or raw (a whole RFC 5322 message)")
	case *mailintakev1.SendMessageRequest_Raw:
		if req.GetInReplyTo() != nil {
			v.add("in_reply_to", "is for a draft: a raw message carries its own In-Reply-To and References")
		}
		if req.GetFrom() != "" {
			v.add("from", "is for a draft: a raw message's From is its own")
		}
		if len(req.GetRaw()) == 0 {
			v.add("raw", "is empty")
		}
	case *mailintakev1.SendMessageRequest_Draft:
		if len(req.GetEnvelopeRecipients()) > 0 {
			v.add("envelope_recipients", "is for a raw message: a draft's recipients are its to, cc and bcc")
		}
	}
	if req.GetMailboxId() == "" {
		v.add("mailbox_id", "is required")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	mb, err := (&mailboxService{s: o.s}).load(ctx, "mailbox_id", req.GetMailboxId())
	if err != nil {
		return nil, err
	}
	if !outbox.SendingOn(mb.Spec) {
		return nil, status.Errorf(codes.FailedPrecondition,
			"sending is off for mailbox %s: turn it on with its submission server (mailintake mailbox update %s --sending --smtp-host HOST, or sending_enabled and smtp_host)", mb.Spec.GetId(), mb.Spec.GetId())
	}
	hash := requestHash(req)
	// A repeated call returns what the first one queued, before anything is composed (the
	// original of a reply may be gone by now).
	prev, err := o.s.store.OutboundByKey(ctx, mb.Spec.GetId(), req.GetIdempotencyKey())
	switch {
	case err == nil:
		return o.replay(prev, hash, req.GetIdempotencyKey())
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	now := o.s.now()
	id := uuid.Must(uuid.NewV7()).String()
	var out *smtpsend.Outgoing
	var inReplyTo string
	if req.GetDraft() != nil {
		out, inReplyTo, err = o.compose(ctx, mb, req, now)
	} else {
		out, err = smtpsend.PrepareRaw(req.GetRaw(), smtpsend.RawOptions{Recipients: req.GetEnvelopeRecipients(), Date: now})
		if err != nil {
			err = violations{{Field: "raw", Description: err.Error()}}.err()
		}
	}
	if err != nil {
		return nil, err
	}
	if len(out.Bytes) > maxOutboundBytes {
		return nil, violations{{Field: "content", Description: fmt.Sprintf("the message is %d bytes; at most %d can be sent (send a link to large files)", len(out.Bytes), maxOutboundBytes)}}.err()
	}
	rec := &store.Outbound{ID: id, MailboxID: mb.Spec.GetId(), Tenant: mb.Spec.GetTenant(), IdempotencyKey: req.GetIdempotencyKey(), RequestHash: hash,
		State: store.OutboundQueued, MessageID: out.MessageID, InReplyTo: inReplyTo, From: out.From, Recipients: out.Recipients,
		Subject: subjectOf(req, out), Raw: out.Bytes, Warnings: out.Warnings, NextAttemptTime: now, CreateTime: now, UpdateTime: now}
	prev, created, err := o.s.store.CreateOutbound(ctx, rec)
	if err != nil {
		return nil, err
	}
	if !created {
		return o.replay(prev, hash, req.GetIdempotencyKey()) // a concurrent call with the same key won
	}
	o.s.log.InfoContext(ctx, "outbound message queued", "mailbox_id", rec.MailboxID, "outbound_id", id, "message_id", rec.MessageID, "recipients", len(rec.Recipients))
	o.s.outbox.WakeFor(rec.MailboxID)
	return &mailintakev1.SendMessageResponse{OutboundMessage: outboundToProto(rec)}, nil
}

// replay answers a repeated SendMessage: the earlier message when the content is the same.
func (o *outboundService) replay(prev *store.Outbound, hash []byte, key string) (*mailintakev1.SendMessageResponse, error) {
	if !bytes.Equal(prev.RequestHash, hash) {
		st := status.New(codes.AlreadyExists, fmt.Sprintf("idempotency_key: %q was already used for another message of this mailbox (outbound %s, Message-ID <%s>); "+
			"a repeated call must send the same content, a new message needs a new key", key, prev.ID, prev.MessageID))
		if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: "idempotency_key", Description: "was already used for another message of this mailbox (outbound " + prev.ID + ")"}}}); err == nil {
			st = d
		}
		return nil, st.Err()
	}
	return &mailintakev1.SendMessageResponse{OutboundMessage: outboundToProto(prev), Replayed: true}, nil
}

// subjectOf is the subject an outbound message is listed with.
func subjectOf(req *mailintakev1.SendMessageRequest, out *smtpsend.Outgoing) string {
	if d := req.GetDraft(); d != nil && d.GetSubject() != "" {
		return d.GetSubject()
	}
	p := parse.Parse(headerOf(out.Bytes), parse.Options{})
	return p.GetEnvelope().GetSubject()
}

// headerOf returns a message's header section (with the blank line that ends it).
func headerOf(msg []byte) []byte {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(msg, sep); i >= 0 {
			return msg[:i+len(sep)]
		}
	}
	return msg
}

// compose writes a draft as a message, threaded to its original. It returns the Message-ID
// the message answers.
func (o *outboundService) compose(ctx context.Context, mb *store.Mailbox, req *mailintakev1.SendMessageRequest, now time.Time) (*smtpsend.Outgoing, string, error) {
	d := req.GetDraft()
	from := strings.TrimSpace(req.GetFrom())
	if from == "" {
		from = outbox.From(mb.Spec)
		if from == "" {
			return nil, "", violations{{Field: "from", Description: fmt.Sprintf(
				"is required: the mailbox's username %q is not an email address and it sets no smtp_from", mb.Spec.GetUsername())}}.err()
		}
	}
	if _, err := mail.ParseAddress(from); err != nil || strings.ContainsAny(from, "\r\n") {
		return nil, "", violations{{Field: "from", Description: fmt.Sprintf("%q is not an email address", from)}}.err()
	}
	draft := smtpsend.Draft{From: from, To: d.GetTo(), Cc: d.GetCc(), Bcc: d.GetBcc(), ReplyTo: d.GetReplyTo(), Subject: d.GetSubject(),
		Text: d.GetTextBody(), HTML: d.GetHtmlBody(), AutoSubmitted: d.GetAutoSubmitted(), Date: now}
	for _, a := range d.GetAttachments() {
		draft.Attachments = append(draft.Attachments, smtpsend.Attachment{Filename: a.GetFilename(), ContentType: a.GetContentType(), ContentID: a.GetContentId(), Data: a.GetData()})
	}
	for _, h := range d.GetHeaders() {
		draft.Headers = append(draft.Headers, smtpsend.Field{Name: h.GetName(), Value: h.GetValue()})
	}
	if irt := req.GetInReplyTo(); irt != nil {
		orig, err := o.original(ctx, irt)
		if err != nil {
			return nil, "", err
		}
		draft.Reply = orig
	}
	out, err := smtpsend.Compose(draft)
	if err != nil {
		return nil, "", composeViolation(err)
	}
	inReplyTo := ""
	if draft.Reply != nil {
		inReplyTo, _ = smtpsend.ThreadIDs(*draft.Reply)
	}
	return out, inReplyTo, nil
}

// composeViolation names the draft's field a composing error is about ("to[1]: …" is
// draft.to[1]).
func composeViolation(err error) error {
	msg := err.Error()
	field := "draft"
	if name, rest, ok := strings.Cut(msg, ": "); ok && !strings.ContainsAny(name, " \"") {
		base, _, _ := strings.Cut(name, "[")
		switch base {
		case "to", "cc", "bcc", "headers", "attachments":
			field, msg = "draft."+name, rest
		case "reply-to":
			field, msg = "draft.reply_to"+strings.TrimPrefix(name, base), rest
		case "from":
			field, msg = "from", rest
		}
	}
	return violations{{Field: field, Description: msg}}.err()
}

// original returns what a reply needs of the message it answers: from the mail server for a
// delivered message (its header only), or as the caller gave it.
func (o *outboundService) original(ctx context.Context, irt *mailintakev1.InReplyTo) (*smtpsend.Original, error) {
	switch {
	case irt.GetRfcMessageId() != "":
		id := strings.Trim(strings.TrimSpace(irt.GetRfcMessageId()), "<>")
		if id == "" || strings.ContainsAny(id, " \r\n<>") || !strings.Contains(id, "@") {
			return nil, violations{{Field: "in_reply_to.rfc_message_id", Description: fmt.Sprintf("%q is not a Message-ID (local@domain)", irt.GetRfcMessageId())}}.err()
		}
		var refs []string
		for _, r := range irt.GetReferences() {
			refs = append(refs, strings.Fields(strings.NewReplacer("<", " ", ">", " ").Replace(r))...)
		}
		return &smtpsend.Original{MessageID: id, References: refs, Subject: irt.GetSubject()}, nil
	case irt.GetDeliveredMessageId() != "":
		if len(irt.GetReferences()) > 0 || irt.GetSubject() != "" {
			return nil, violations{{Field: "in_reply_to.references", Description: "is for rfc_message_id: a delivered message's references and subject are read from it"}}.err()
		}
		const field = "in_reply_to.delivered_message_id"
		k, err := delivery.ParseKey(irt.GetDeliveredMessageId())
		if err != nil {
			return nil, violations{{Field: field, Description: err.Error()}}.err()
		}
		omb, err := (&mailboxService{s: o.s}).load(ctx, field, k.MailboxID)
		if err != nil {
			return nil, err
		}
		hw := &headerWriter{}
		err = o.s.streamRaw(ctx, omb, k, hw)
		if !hw.done && err != nil {
			if se := fetchError(err); status.Code(se) == codes.NotFound {
				return nil, status.Errorf(codes.NotFound, "in_reply_to.delivered_message_id: message %s is no longer in its mailbox's folder (%v); "+
					"give the original's Message-ID as in_reply_to.rfc_message_id instead", k, status.Convert(se).Message())
			} else {
				return nil, se
			}
		}
		env := parse.Parse(hw.header(), parse.Options{}).GetEnvelope()
		return &smtpsend.Original{MessageID: env.GetMessageId(), References: env.GetReferences(), InReplyTo: env.GetInReplyTo(), Subject: env.GetSubject()}, nil
	}
	return nil, violations{{Field: "in_reply_to", Description: "name the original: delivered_message_id or rfc_message_id"}}.err()
}

// errHeaderRead ends a raw message's fetch once its header is in.
var errHeaderRead = errors.New("the header is read")

// headerWriter keeps a raw message's header section as it streams in, and stops the stream
// after it (or after maxOriginalHeader bytes).
type headerWriter struct {
	buf  []byte
	done bool
}

func (h *headerWriter) Write(p []byte) (int, error) {
	if h.done {
		return 0, errHeaderRead
	}
	h.buf = append(h.buf, p...)
	if bytes.Contains(h.buf, []byte("\r\n\r\n")) || bytes.Contains(h.buf, []byte("\n\n")) || len(h.buf) >= maxOriginalHeader {
		h.done = true
		return len(p), errHeaderRead
	}
	return len(p), nil
}

func (h *headerWriter) header() []byte {
	b := headerOf(h.buf)
	if len(b) > maxOriginalHeader {
		b = b[:maxOriginalHeader]
	}
	return b
}

// load loads an outbound message the caller may see; another tenant's is not found.
func (o *outboundService) load(ctx context.Context, id string) (*store.Outbound, error) {
	if id == "" {
		return nil, violations{{Field: "id", Description: "is required"}}.err()
	}
	m, err := o.s.store.GetOutbound(ctx, id, false)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !caller(ctx).canSee(m.Tenant)) {
		return nil, notFound("outbound message", id)
	}
	return m, err
}

func (o *outboundService) GetOutboundMessage(ctx context.Context, req *mailintakev1.GetOutboundMessageRequest) (*mailintakev1.GetOutboundMessageResponse, error) {
	m, err := o.load(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &mailintakev1.GetOutboundMessageResponse{OutboundMessage: outboundToProto(m)}, nil
}

var outboundStates = map[mailintakev1.OutboundState]store.OutboundState{
	mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED: store.OutboundQueued, mailintakev1.OutboundState_OUTBOUND_STATE_SENDING: store.OutboundSending,
	mailintakev1.OutboundState_OUTBOUND_STATE_SENT: store.OutboundSent, mailintakev1.OutboundState_OUTBOUND_STATE_FAILED: store.OutboundFailed,
	mailintakev1.OutboundState_OUTBOUND_STATE_UNKNOWN: store.OutboundUnknown, mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED: store.OutboundBounced,
}

func (o *outboundService) ListOutboundMessages(ctx context.Context, req *mailintakev1.ListOutboundMessagesRequest) (*mailintakev1.ListOutboundMessagesResponse, error) {
	var v violations
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		v.add("page_size", "must be between 0 and %d", maxPageSize)
	case size == 0:
		size = defaultPageSize
	}
	var after string
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(b) == 0 {
			v.add("page_token", "is not a token from a previous response")
		}
		after = string(b)
	}
	q := store.OutboundQuery{AfterID: after, Limit: size + 1}
	if st := req.GetState(); st != mailintakev1.OutboundState_OUTBOUND_STATE_UNSPECIFIED {
		var ok bool
		if q.State, ok = outboundStates[st]; !ok {
			v.add("state", "unknown state %d", st)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	p := caller(ctx)
	q.Tenant = req.GetTenant()
	if !p.Admin {
		if q.Tenant != "" && q.Tenant != p.Tenant {
			return nil, permission("a token of tenant %q cannot list tenant %q", p.Tenant, q.Tenant)
		}
		q.Tenant = p.Tenant
	}
	if id := req.GetMailboxId(); id != "" {
		if _, err := (&mailboxService{s: o.s}).load(ctx, "mailbox_id", id); err != nil {
			return nil, err
		}
		q.MailboxID = id
	}
	list, err := o.s.store.ListOutbound(ctx, q)
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListOutboundMessagesResponse{}
	if len(list) > size {
		list = list[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(list[size-1].ID))
	}
	for _, m := range list {
		resp.OutboundMessages = append(resp.OutboundMessages, outboundToProto(m))
	}
	return resp, nil
}

var errorKinds = map[string]mailintakev1.OutboundErrorKind{
	smtpsend.Temporary.String(): mailintakev1.OutboundErrorKind_OUTBOUND_ERROR_KIND_TEMPORARY,
	smtpsend.Permanent.String(): mailintakev1.OutboundErrorKind_OUTBOUND_ERROR_KIND_PERMANENT,
	smtpsend.Unknown.String():   mailintakev1.OutboundErrorKind_OUTBOUND_ERROR_KIND_UNKNOWN,
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// outboundToProto returns a stored outbound message as the API shows it.
func outboundToProto(m *store.Outbound) *mailintakev1.OutboundMessage {
	out := &mailintakev1.OutboundMessage{Id: m.ID, MailboxId: m.MailboxID, Tenant: m.Tenant, MessageId: m.MessageID, From: m.From,
		Recipients: m.Recipients, Subject: m.Subject, IdempotencyKey: m.IdempotencyKey, InReplyTo: m.InReplyTo, Size: uint64(m.Size),
		Attempts: int32(m.Attempts), Warnings: m.Warnings, CreateTime: timestamp(m.CreateTime), UpdateTime: timestamp(m.UpdateTime),
		SentTime: timestamp(m.SentTime)}
	for api, st := range outboundStates {
		if st == m.State {
			out.State = api
		}
	}
	if m.State == store.OutboundQueued {
		out.NextAttemptTime = timestamp(m.NextAttemptTime)
	}
	if r := m.Result; r != nil {
		out.SmtpQueueId, out.SmtpResponse, out.DsnRequested = r.QueueID, r.Response, r.DSN
	}
	if e := m.Error; e != nil {
		pe := &mailintakev1.OutboundError{Kind: errorKinds[e.Kind], Step: e.Step, Code: int32(e.Code), EnhancedCode: e.Enhanced, ServerText: e.Text,
			Explanation: e.Explanation, Time: timestamp(e.Time)}
		for _, r := range e.Recipients {
			pe.Recipients = append(pe.Recipients, &mailintakev1.OutboundRecipientError{Address: r.Address, Code: int32(r.Code), EnhancedCode: r.Enhanced, Text: r.Text})
		}
		out.Error = pe
	}
	if b := m.Bounce; b != nil {
		out.BouncedRecipients, out.BounceMessageId, out.BounceTime = b.Recipients, b.MessageID, timestamp(b.Time)
	}
	if c := m.SentCopy; c != nil {
		out.SentCopy = &mailintakev1.SentCopy{Folder: c.Folder, Saved: c.Saved, Error: c.Error, Time: timestamp(c.Time)}
	}
	return out
}

// sendingTroubleWindow is how far back a mailbox's status looks for messages that ended unsent.
const sendingTroubleWindow = 24 * time.Hour

// sendingWarnings says, for a mailbox's status, what of its sending needs an admin: messages
// waiting for another attempt after a failed one, and messages that failed or ended in an
// unknown state in the last day, with the latest error in words. The session's state says
// nothing of sending (it is about fetching), so without these a mailbox whose submission server
// refuses every message looked healthy everywhere but in its event log. A store that cannot
// answer adds nothing here: the status still shows the session, and the store's failure is
// reported by the calls that need it.
func (s *Server) sendingWarnings(ctx context.Context, mailboxID string) []string {
	h, err := s.store.OutboundHealth(ctx, mailboxID, time.Now().Add(-sendingTroubleWindow))
	if err != nil {
		s.log.Debug("reading the mailbox's sending health", "mailbox_id", mailboxID, "err", err)
		return nil
	}
	var w []string
	if h.Retrying > 0 {
		verb := "wait"
		if h.Retrying == 1 {
			verb = "waits"
		}
		w = append(w, fmt.Sprintf("sending: %s %s for another attempt after a failed one", messages(h.Retrying), verb))
	}
	if h.Failed > 0 {
		w = append(w, fmt.Sprintf("sending: %s failed in the last 24 hours and will not be sent (mailintake outbound list --mailbox %s)",
			messages(h.Failed), mailboxID))
	}
	if h.Unknown > 0 {
		w = append(w, fmt.Sprintf("sending: %s in the last 24 hours may or may not have been sent (the connection broke after the whole message was written): not sent again",
			messages(h.Unknown)))
	}
	if e := h.LastError; e != nil {
		when := string(h.LastErrorState)
		if !e.Time.IsZero() {
			when = e.Time.UTC().Format("2006-01-02 15:04:05 MST") + ", " + when
		}
		msg := e.Explanation
		if e.Code != 0 {
			msg += " (the server said: " + smtpsend.ReplyString(e.Code, e.Enhanced, e.Text) + ")"
		}
		w = append(w, fmt.Sprintf("sending: the latest error (%s): %s", when, msg))
	}
	return w
}

// messages is "1 message" or "N messages".
func messages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}
