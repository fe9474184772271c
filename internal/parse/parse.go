// Package parse turns a raw RFC 5322 message into the structured message the stream delivers.
//
// The parser is lenient: it never fails and never panics on its input. Whatever it could read is
// returned; whatever it could not is listed in Message.problems, and a message it cannot read at
// all carries its raw bytes, so nothing is lost. MIME decoding (transfer encodings, charsets,
// RFC 2047 and RFC 2231) is go-message's; this package walks the tree, picks the bodies, collects
// attachments and reads the service-desk signals.
package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Defaults of Options.
const (
	DefaultMaxInlineAttachment = 4 << 20
	DefaultMaxDepth            = 20
	DefaultMaxParts            = 1000
	DefaultMaxDecodedBytes     = 256 << 20
)

// Options tune a parse. The zero value uses the defaults.
type Options struct {
	// TicketPattern finds a ticket reference in the subject (its first group, or the whole match).
	TicketPattern *regexp.Regexp
	// MaxInlineAttachment: larger attachments are described but their data is omitted.
	MaxInlineAttachment int64
	// MaxDepth bounds multipart and message/rfc822 nesting.
	MaxDepth int
	// MaxParts bounds the number of MIME parts read.
	MaxParts int
	// MaxDecodedBytes bounds the decoded bytes read from all parts together.
	MaxDecodedBytes int64
}

func (o *Options) defaults() {
	if o.MaxInlineAttachment == 0 {
		o.MaxInlineAttachment = DefaultMaxInlineAttachment
	}
	if o.MaxDepth == 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxParts == 0 {
		o.MaxParts = DefaultMaxParts
	}
	if o.MaxDecodedBytes == 0 {
		o.MaxDecodedBytes = DefaultMaxDecodedBytes
	}
}

// wordDecoder decodes RFC 2047 words in any charset go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

type parser struct {
	opts    Options
	parts   int
	decoded int64
	// scratch receives each part's decoded body; what is kept of it is copied out.
	scratch []byte
}

// scratchPool keeps parse buffers between messages, so a part's body is read without growing
// (and zeroing) a new buffer each time.
var scratchPool sync.Pool

// maxPooledScratch: larger buffers, grown for a rare huge part, are left to the collector.
const maxPooledScratch = 16 << 20

// Parse parses raw. It always returns a message.
func Parse(raw []byte, opts Options) *mailintakev1.Message {
	opts.defaults()
	p := &parser{opts: opts}
	if b, ok := scratchPool.Get().(*[]byte); ok {
		p.scratch = *b
	}
	defer func() {
		if cap(p.scratch) <= maxPooledScratch {
			b := p.scratch[:0]
			scratchPool.Put(&b)
		}
	}()
	return p.message(raw, "", 0)
}

// streamed is what is kept of a part read past its head: its size.
type streamed struct {
	size      int64
	truncated bool // more than the decoded-bytes budget allowed
}

// skipRest reads the rest of r (at most limit more bytes) after head, holding none of it, and
// measures the whole. The bytes are decoded to be measured (a base64 body's size depends on what
// its decoder skips) but neither kept nor hashed.
func skipRest(head []byte, r io.Reader, limit int64) (*streamed, error) {
	st := &streamed{}
	var n int64
	var err error
	if b, ok := r.(*base64Reader); ok {
		n, st.truncated, err = b.discard(limit)
	} else {
		n, err = io.Copy(io.Discard, io.LimitReader(r, limit))
		if err == nil && n == limit {
			var one [1]byte
			if m, _ := io.ReadFull(r, one[:]); m > 0 {
				st.truncated = true
			}
		}
	}
	st.size = int64(len(head)) + n
	return st, err
}

// readPart reads at most limit bytes of a part's decoded body into the scratch buffer. The bytes
// are valid until the next readPart: whatever keeps them copies them.
func (p *parser) readPart(r io.Reader, limit int64) ([]byte, error) {
	buf := p.scratch[:0]
	var err error
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 64<<10), int(limit)-len(buf)))
		}
		var n int
		n, err = r.Read(buf[len(buf):min(cap(buf), len(buf)+int(limit-int64(len(buf))))])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	p.scratch = buf
	if err == io.EOF {
		err = nil
	}
	return buf, err
}

func (p *parser) message(raw []byte, path string, depth int) (msg *mailintakev1.Message) {
	sum := sha256.Sum256(raw)
	msg = &mailintakev1.Message{Sha256: hex.EncodeToString(sum[:]), RawSize: uint64(len(raw)), Signals: &mailintakev1.Signals{}}
	defer func() {
		// The parser must never take the server down; a panic in a dependency becomes a problem
		// and the raw bytes travel with the message.
		if r := recover(); r != nil {
			msg.Problems = append(msg.Problems, problem(path, "internal", fmt.Sprintf("parser failure: %v", r)))
			msg.Raw = raw
		}
	}()
	readable, repaired := repairHeader(raw)
	for _, r := range repaired {
		msg.Problems = append(msg.Problems, problem(path, "header", r))
	}
	e, b64, err := readEntity(bytes.NewReader(readable))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		msg.Problems = append(msg.Problems, problem(path, "structure", "the message header cannot be read: "+err.Error()))
		msg.Raw = raw
		return msg
	}
	if err != nil {
		msg.Problems = append(msg.Problems, problem(path, codeOf(err), err.Error()))
	}
	h := mail.Header{Header: e.Header}
	msg.Headers = headers(h, path, &msg.Problems)
	msg.Envelope = envelope(h, path, &msg.Problems)
	p.walk(e, b64, msg, path, "", depth, false)
	if msg.TextBody == "" && msg.HtmlBody != "" {
		msg.TextBody = HTMLToText(msg.HtmlBody)
		msg.TextFromHtml = true
	}
	if msg.HtmlBody != "" {
		msg.HtmlBody = SanitizeHTML(msg.HtmlBody)
	}
	signals(h, msg, p.opts.TicketPattern)
	if fixUTF8(msg.ProtoReflect()) {
		msg.Problems = append(msg.Problems, problem(path, "charset", "text without a declared charset (or not in it) was read as Windows-1252"))
	}
	if msg.TextBody != "" {
		r := SplitReply(msg.TextBody)
		msg.Reply = &mailintakev1.Reply{NewText: r.NewText, QuotedText: r.Quoted, Signature: r.Signature}
	}
	return msg
}

func problem(part, code, text string) *mailintakev1.ParseProblem {
	return &mailintakev1.ParseProblem{Part: part, Code: code, Message: text}
}

func codeOf(err error) string {
	switch {
	case message.IsUnknownCharset(err):
		return "charset"
	case message.IsUnknownEncoding(err):
		return "encoding"
	}
	return "structure"
}

func joinPath(base string, i int) string {
	if base == "" {
		return strconv.Itoa(i)
	}
	return base + "." + strconv.Itoa(i)
}

// walk visits an entity; path is its IMAP part number ("" for the top level), b64 its base64
// decoder if it has one.
func (p *parser) walk(e *message.Entity, b64 *base64Reader, msg *mailintakev1.Message, base, path string, depth int, inAlternative bool) {
	where := path
	if base != "" && path != "" {
		where = base + "/" + path
	}
	p.parts++
	if p.parts > p.opts.MaxParts {
		if p.parts == p.opts.MaxParts+1 {
			msg.Problems = append(msg.Problems, problem(where, "limit", fmt.Sprintf("more than %d parts; the rest are not read", p.opts.MaxParts)))
		}
		return
	}
	if depth > p.opts.MaxDepth {
		msg.Problems = append(msg.Problems, problem(where, "limit", fmt.Sprintf("nested deeper than %d levels; not read", p.opts.MaxDepth)))
		return
	}
	if _, _, err := e.Header.ContentType(); err != nil {
		// A Content-Type the strict grammar refuses may still name a multipart boundary (an
		// unquoted "=" is common): rewrite it so the parts are found.
		if mt, params := lenientMediaType(e.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
			e.Header.Set("Content-Type", mime.FormatMediaType(mt, params))
			if ne, _ := message.New(e.Header, e.Body); ne != nil {
				e = ne
			}
		}
	}
	if mr := newMultipartReader(e); mr != nil {
		mt, _, _ := e.Header.ContentType()
		alt := mt == "multipart/alternative"
		for i := 1; ; i++ {
			part, partB64, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil && part == nil {
				msg.Problems = append(msg.Problems, problem(where, "structure", "multipart: "+err.Error()))
				return
			}
			if err != nil {
				msg.Problems = append(msg.Problems, problem(joinPath(path, i), codeOf(err), err.Error()))
			}
			p.walk(part, partB64, msg, base, joinPath(path, i), depth+1, alt)
			if p.parts > p.opts.MaxParts || p.decoded >= p.opts.MaxDecodedBytes {
				return // limits reached: stop reading parts (a broken multipart may never end)
			}
		}
	}
	if path == "" {
		path = "1"
		if where == "" {
			where = "1"
		}
	}
	ct, ctParams, err := e.Header.ContentType()
	if err != nil {
		ct, ctParams = lenientMediaType(e.Header.Get("Content-Type"))
		if ct == "" || !strings.Contains(ct, "/") {
			msg.Problems = append(msg.Problems, problem(where, "header", "Content-Type: "+err.Error()+"; read as text/plain"))
			ct = "text/plain"
		}
	}
	disp, dParams, err := e.Header.ContentDisposition()
	if err != nil && e.Header.Get("Content-Disposition") != "" {
		disp, dParams = lenientMediaType(e.Header.Get("Content-Disposition"))
	}
	filename := dParams["filename"]
	for _, alt := range []string{ctParams["name"], ctParams["filename"], dParams["name"], ctParams["file"]} {
		// Clients put the name in several places; "file" is a non-standard one seen in the wild.
		if filename == "" {
			filename = alt
		}
	}
	if dec, err := wordDecoder.DecodeHeader(filename); err == nil {
		filename = dec
	}
	budget := p.opts.MaxDecodedBytes - p.decoded
	// A part that can only become an attachment (not text, not a message, not a winmail.dat) and
	// is larger than the inline limit is not sent: it is measured as it streams past, never held
	// whole (a 30 MB scan costs no 30 MB buffer) and not hashed (GetAttachment hashes it).
	streamable := !strings.HasPrefix(ct, "text/") && !strings.HasPrefix(ct, "message/") &&
		ct != "application/ms-tnef" && ct != "application/vnd.ms-tnef" && !strings.EqualFold(filename, "winmail.dat")
	head := budget + 1
	if streamable {
		head = min(head, p.opts.MaxInlineAttachment+1)
	}
	body, err := p.readPart(e.Body, head)
	var tail *streamed // set when the part went on past the head
	if streamable && int64(len(body)) == head && head <= budget && err == nil {
		tail, err = skipRest(body, e.Body, budget-int64(len(body)))
	}
	size := int64(len(body))
	if tail != nil {
		size = tail.size
	}
	if size > budget || (tail != nil && tail.truncated) {
		if tail == nil {
			body = body[:budget]
			size = budget
		}
		msg.Problems = append(msg.Problems, problem(where, "limit", "decoded size limit reached; the part is truncated"))
	}
	p.decoded += size
	if err != nil {
		msg.Problems = append(msg.Problems, problem(where, "encoding", "body: "+err.Error()))
	}
	if b64 != nil {
		if pr := b64.problem(); pr != "" {
			msg.Problems = append(msg.Problems, problem(where, "encoding", "base64: "+pr))
		}
	}
	attachment := disp == "attachment" || (filename != "" && disp != "inline" && !strings.HasPrefix(ct, "text/"))
	switch {
	case ct == "text/plain" && !attachment && filename == "" && (!inAlternative || msg.TextBody == ""):
		// Clients split one body around inline images (Apple Mail): later inline text parts
		// continue it rather than become attachments.
		msg.TextBody = joinBody(msg.TextBody, string(body))
		return
	case ct == "text/plain" && !attachment && msg.TextBody == "":
		msg.TextBody = string(body)
		return
	case ct == "text/html" && !attachment && msg.HtmlBody == "":
		msg.HtmlBody = string(body)
		return
	}
	if isTNEF(ct, filename, body) {
		// The body leaves the scratch buffer: unpacking may parse embedded messages.
		body = bytes.Clone(body)
		if p.unpackTNEF(msg, path, where, body) {
			return // the winmail.dat's files and body replace it; GetAttachment still serves it by id
		}
	}
	a := &mailintakev1.Attachment{
		Id: path, Filename: filename, ContentType: ct, Size: uint64(size),
		ContentId: strings.Trim(e.Header.Get("Content-Id"), "<> "),
	}
	switch disp {
	case "inline":
		a.Disposition = mailintakev1.Disposition_DISPOSITION_INLINE
	case "attachment":
		a.Disposition = mailintakev1.Disposition_DISPOSITION_ATTACHMENT
	}
	if tail != nil {
		a.DataOmitted = true
		msg.Attachments = append(msg.Attachments, a)
		return
	}
	if int64(len(body)) > p.opts.MaxInlineAttachment {
		a.DataOmitted = true
	} else {
		sum := sha256.Sum256(body)
		a.Sha256 = hex.EncodeToString(sum[:])
		a.Data = bytes.Clone(body)
	}
	switch ct {
	case "text/calendar":
		m := strings.ToUpper(ctParams["method"])
		if sm := calendarMethod.FindSubmatch(body); m == "" && sm != nil {
			m = string(sm[1])
		}
		if msg.Signals.CalendarMethod == "" {
			msg.Signals.CalendarMethod = m
		}
	case "message/rfc822", "message/global":
		own := a.Data // the nested parse reuses the scratch buffer
		if own == nil {
			own = bytes.Clone(body)
		}
		a.Message = p.message(own, where, depth+1)
	default:
		reportPart(msg, ct, ctParams, body)
	}
	msg.Attachments = append(msg.Attachments, a)
}

func headers(h mail.Header, part string, problems *[]*mailintakev1.ParseProblem) []*mailintakev1.Header {
	var out []*mailintakev1.Header
	fields := h.Fields()
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
			*problems = append(*problems, problem(part, "header", fields.Key()+": "+err.Error()))
		}
		out = append(out, &mailintakev1.Header{Name: fields.Key(), Value: v})
	}
	return out
}

func addresses(h mail.Header, key, part string, problems *[]*mailintakev1.ParseProblem) []*mailintakev1.Address {
	if !h.Has(key) {
		return nil
	}
	list, err := h.AddressList(key)
	if err != nil {
		// The obsolete syntax (comments and routes inside addresses) is valid; anything else
		// that net/mail refuses is read leniently and reported.
		cleaned := cleanAddressList(h.Get(key))
		if l, err2 := parseAddressList(cleaned); err2 == nil {
			list = l
		} else {
			*problems = append(*problems, problem(part, "address", key+": "+err.Error()+"; read leniently"))
			list = lenientAddresses(cleaned)
		}
	}
	var out []*mailintakev1.Address
	for _, a := range list {
		out = append(out, &mailintakev1.Address{Name: a.Name, Address: a.Address})
	}
	return out
}

func envelope(h mail.Header, part string, problems *[]*mailintakev1.ParseProblem) *mailintakev1.Envelope {
	env := &mailintakev1.Envelope{}
	var err error
	if env.MessageId, err = h.MessageID(); err != nil {
		if env.MessageId = lenientMsgID(h.Get("Message-Id")); env.MessageId == "" {
			*problems = append(*problems, problem(part, "header", "Message-Id: "+err.Error()))
		}
	}
	if env.InReplyTo, err = h.MsgIDList("In-Reply-To"); err != nil {
		*problems = append(*problems, problem(part, "header", "In-Reply-To: "+err.Error()))
	}
	if env.References, err = h.MsgIDList("References"); err != nil {
		*problems = append(*problems, problem(part, "header", "References: "+err.Error()))
	}
	if env.Subject, err = subject(h); err != nil {
		*problems = append(*problems, problem(part, "header", "Subject: "+err.Error()))
	}
	if h.Has("Date") {
		d, err := h.Date()
		if err != nil {
			// The obsolete syntax (comments, spaces around the colons) must be accepted too.
			d, err = lenientDate(h.Get("Date"))
		}
		if err != nil {
			*problems = append(*problems, problem(part, "header", "Date: "+err.Error()))
		} else {
			env.Date = timestamppb.New(d)
		}
	}
	env.From = addresses(h, "From", part, problems)
	if s := addresses(h, "Sender", part, problems); len(s) > 0 {
		env.Sender = s[0]
	}
	env.ReplyTo = addresses(h, "Reply-To", part, problems)
	env.To = addresses(h, "To", part, problems)
	env.Cc = addresses(h, "Cc", part, problems)
	env.Bcc = addresses(h, "Bcc", part, problems)
	return env
}

// subject returns the Subject unfolded as RFC 5322 section 2.2.3 says (only the line breaks
// are removed; the white space of a fold stays) and RFC 2047 decoded. On a decoding error it
// returns the undecoded value.
func subject(h mail.Header) (string, error) {
	raw, err := h.Raw("Subject")
	if err != nil || raw == nil {
		return h.Subject()
	}
	_, v, _ := bytes.Cut(raw, []byte(":"))
	v = bytes.ReplaceAll(bytes.ReplaceAll(v, []byte("\r\n"), nil), []byte("\n"), nil)
	text := strings.Trim(string(v), " \t\r")
	dec, err := wordDecoder.DecodeHeader(text)
	if err != nil {
		return text, err
	}
	return dec, nil
}

// outOfOffice matches the subjects of out-of-office replies in common languages.
var outOfOffice = regexp.MustCompile(`(?i)^\s*(auto(matic)?\s*(reply|response|antwort|réponse|respuesta)\b|out of (the )?office|abwesenheit|absence|abwesend|réponse automatique|respuesta automática|fuori sede|afwezig|automatisch antwoord|frånvaro|fravær|poza biurem|ausente|i am (currently )?(out|away))`)

// signals reads the service-desk signals from the header.
// SHA256 returns the lower-case hex SHA-256 of raw, as Message.sha256 carries it.
func SHA256(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// ErrNoSuchPart is returned by OpenPart for an id the message does not have.
var ErrNoSuchPart = errors.New("the message has no such part")

// OpenPart finds the part with an attachment id (Attachment.id) in a raw message read from r,
// streaming: it returns the part's description and a reader of its decoded bytes, which must be
// read before r is used again. Parts inside forwarded messages are not addressed (they travel in
// Attachment.message); files unpacked from a winmail.dat ("PART:N") are.
func OpenPart(r io.Reader, id string) (*mailintakev1.Attachment, io.Reader, error) {
	e, _, err := readEntity(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, nil, err
	}
	if partID, n, ok := strings.Cut(id, ":"); ok {
		i, err := strconv.Atoi(n)
		if err != nil {
			return nil, nil, ErrNoSuchPart
		}
		_, body, err := findPart(e, "", partID, 0)
		if err != nil {
			return nil, nil, err
		}
		return openTNEFPart(body, id, i)
	}
	return findPart(e, "", id, 0)
}

func findPart(e *message.Entity, path, id string, depth int) (*mailintakev1.Attachment, io.Reader, error) {
	if depth > DefaultMaxDepth {
		return nil, nil, ErrNoSuchPart
	}
	if mr := newMultipartReader(e); mr != nil {
		for i := 1; ; i++ {
			part, _, err := mr.NextPart()
			if err != nil && part == nil {
				return nil, nil, ErrNoSuchPart
			}
			p := joinPath(path, i)
			if p == id || strings.HasPrefix(id, p+".") {
				return findPart(part, p, id, depth+1)
			}
		}
	}
	if path == "" {
		path = "1"
	}
	if path != id {
		return nil, nil, ErrNoSuchPart
	}
	ct, ctParams, _ := e.Header.ContentType()
	_, dParams, _ := e.Header.ContentDisposition()
	name := dParams["filename"]
	if name == "" {
		name = ctParams["name"]
	}
	if dec, err := wordDecoder.DecodeHeader(name); err == nil {
		name = dec
	}
	return &mailintakev1.Attachment{Id: id, Filename: name, ContentType: ct, ContentId: strings.Trim(e.Header.Get("Content-Id"), "<> ")}, e.Body, nil
}

// joinBody appends a later inline text part to the body, on a new line.
func joinBody(body, part string) string {
	if body == "" {
		return part
	}
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return body + part
}
