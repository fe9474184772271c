// Package parse turns a raw RFC 5322 message into the structured message the stream delivers.
//
// The parser is lenient: it never fails and never panics on its input. Whatever it could read is
// returned; whatever it could not is listed in Message.problems, and a message it cannot read at
// all carries its raw bytes, so nothing is lost. MIME decoding (transfer encodings, charsets,
// RFC 2047 and RFC 2231) is go-message's; this package walks the tree, picks the bodies, collects
// attachments and reads the service-desk signals: auto-replies, bounces in the common formats
// (RFC 3464 and the MTAs' text notices), ARF feedback reports, lists and bulk mail, each with
// its evidence, and the thread candidates a service desk matches tickets on.
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
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/uninit"
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
	buf, err := readUpTo(p.scratch[:0], r, limit)
	p.scratch = buf
	return buf, err
}

// readUpTo appends at most limit bytes of r to buf, growing it as needed.
func readUpTo(buf []byte, r io.Reader, limit int64) ([]byte, error) {
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
	if err == io.EOF {
		err = nil
	}
	return buf, err
}

// decodedBound returns, for a part's body held in memory and not read yet, a bound of its
// decoded size known from its encoded size: base64 decodes to at most three quarters of it
// (plus a partial quantum's bytes), an unencoded body is its size.
func decodedBound(r io.Reader) (int64, bool) {
	switch r := r.(type) {
	case *memBody:
		return int64(len(r.b)), true
	case *base64Reader:
		if m, ok := r.r.(*memBody); ok && len(r.pend) == 0 && len(r.out) == 0 {
			return int64(len(m.b))/4*3 + 3, true
		}
	}
	return 0, false
}

// message parses raw, the whole message (depth 0) or one forwarded inside it; path is its part
// id ("" for the whole message), its own parts are numbered under it as IMAP does ("2.1", "2.2").
func (p *parser) message(raw []byte, path string, depth int) (msg *mailintakev1.Message) {
	sum := sha256.Sum256(raw)
	msg = &mailintakev1.Message{Sha256: hex.EncodeToString(sum[:]), RawSize: uint64(len(raw)), Signals: &mailintakev1.Signals{}}
	if depth == 0 {
		// A second pass over the bytes; done in one pass with the SHA-256 it measured no
		// faster (the SHA-256 is ~90% of the two).
		msg.ContentFingerprint = ContentFingerprint(raw)
	}
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
	e, b64, err := readEntityBytes(readable)
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
	p.walk(e, b64, msg, path, path, depth, false)
	if msg.TextBody == "" && msg.HtmlBody != "" {
		msg.TextBody = HTMLToText(msg.HtmlBody)
		msg.TextFromHtml = true
	}
	if msg.HtmlBody != "" {
		msg.HtmlBody = SanitizeHTML(msg.HtmlBody)
	}
	signals(h, msg, p.opts.TicketPattern)
	// After signals: a bounce's or feedback report's original Message-ID is a candidate.
	msg.Thread = threadCandidates(h, msg, p.opts.TicketPattern)
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

// walk visits an entity; path is its IMAP part number, root that of the message it belongs to
// ("" for the whole message, "2" for a message/rfc822 part 2), b64 its base64 decoder if it
// has one. The parts of a forwarded message are numbered under it, as IMAP numbers them: a
// message/rfc822 part 2 has the parts 2.1, 2.2, …, or 2.1 alone when it is not multipart; so
// every attachment id, nested or not, is one OpenPart (and GetAttachment) finds.
func (p *parser) walk(e *message.Entity, b64 *base64Reader, msg *mailintakev1.Message, root, path string, depth int, inAlternative bool) {
	where := path
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
			p.walk(part, partB64, msg, root, joinPath(path, i), depth+1, alt)
			if p.parts > p.opts.MaxParts || p.decoded >= p.opts.MaxDecodedBytes {
				return // limits reached: stop reading parts (a broken multipart may never end)
			}
		}
	}
	if path == root {
		path = joinPath(root, 1) // a message that is not multipart: its body is part 1
		where = path
	}
	info := describePart(e.Header)
	if info.ctErr != nil {
		msg.Problems = append(msg.Problems, problem(where, "header", "Content-Type: "+info.ctErr.Error()+"; read as text/plain"))
	}
	ct, ctParams, disp, filename := info.ct, info.ctParams, info.disp, info.filename
	budget := p.opts.MaxDecodedBytes - p.decoded
	// A named part is an attachment unless it is declared inline or is text. Inside
	// multipart/alternative a named text part is an attachment too: the alternatives of a body
	// carry no file name, and a file there must not be taken for (or lost behind) the body.
	attachment := disp == "attachment" || (filename != "" && disp != "inline" && (!strings.HasPrefix(ct, "text/") || inAlternative))
	// A part that can only become an attachment (not a body, not a message, not a winmail.dat,
	// not a calendar whose method is read) and is larger than the inline limit is not sent: it
	// is measured as it streams past, never held whole (a 30 MB scan costs no 30 MB buffer) and
	// not hashed (GetAttachment hashes it). One it sends is decoded into a buffer of its own.
	streamable := (!strings.HasPrefix(ct, "text/") || attachment && ct != "text/calendar") && !strings.HasPrefix(ct, "message/") &&
		ct != "application/ms-tnef" && ct != "application/vnd.ms-tnef" && !strings.EqualFold(filename, "winmail.dat")
	head := budget + 1
	if streamable {
		head = min(head, p.opts.MaxInlineAttachment+1)
	}
	var body []byte
	var err error
	ownBuffer := false // body is in a buffer of its own, not the scratch buffer
	if bound, ok := decodedBound(e.Body); streamable && ok && bound < head {
		// It will be sent whole: decoded into a buffer of its own, sized at the bound of its
		// decoded size, which the attachment keeps (not copied out of the scratch buffer).
		body, err = readUpTo(uninit.Bytes(int(bound) + 1)[:0], e.Body, head)
		ownBuffer = true
	} else {
		body, err = p.readPart(e.Body, head)
	}
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
	switch {
	case ct == "text/plain" && !attachment && filename == "" && (!inAlternative || msg.TextBody == ""):
		// Clients split one body around inline images (Apple Mail): later inline text parts
		// continue it rather than become attachments.
		msg.TextBody = joinBody(msg.TextBody, p.unpackUU(msg, path, where, body))
		return
	case ct == "text/plain" && !attachment && msg.TextBody == "":
		msg.TextBody = p.unpackUU(msg, path, where, body)
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
		if ownBuffer && cap(body)-len(body) <= len(body)/8+4096 {
			a.Data = body // its capacity is the buffer it keeps
		} else {
			a.Data = bytes.Clone(body) // from the scratch buffer, or from one far too large
		}
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
		a.Message = p.message(own, path, depth+1)
	case "message/partial":
		msg.Problems = append(msg.Problems, partialProblem(where, ctParams))
	default:
		reportPart(msg, ct, ctParams, body)
	}
	msg.Attachments = append(msg.Attachments, a)
}

// partInfo is what a part's header says about it.
type partInfo struct {
	ct       string // media type, lower case; text/plain when missing or unreadable
	ctParams map[string]string
	ctErr    error // the Content-Type could not be read at all (ct is text/plain)
	disp     string
	dParams  map[string]string
	filename string // decoded
}

// describePart reads a part's Content-Type and Content-Disposition, leniently, and its file
// name from wherever clients put it: Content-Disposition's filename, else Content-Type's name
// (many clients name attachments there only), RFC 2231 extended and continued values in any
// charset, RFC 2047 words inside quotes, raw 8-bit. walk and OpenPart share it, so a part is
// described the same when delivered and when fetched.
func describePart(h message.Header) partInfo {
	var in partInfo
	// mime.ParseMediaType rather than go-message's ContentType: the latter decodes RFC 2047
	// words in every parameter with the standard decoder, before decodeText can repair them.
	if raw := h.Get("Content-Type"); raw == "" {
		in.ct = "text/plain"
	} else if mt, params, err := mime.ParseMediaType(raw); err == nil {
		in.ct, in.ctParams = mt, withExtendedParams(params, raw)
	} else {
		// A Content-Type the strict grammar refuses (unquoted spaces, 8-bit bytes) still names
		// its type and parameters.
		in.ct, in.ctParams = lenientMediaType(raw)
		if in.ct == "" || !strings.Contains(in.ct, "/") {
			in.ct, in.ctErr = "text/plain", err
		}
	}
	if raw := h.Get("Content-Disposition"); raw != "" {
		if d, params, err := mime.ParseMediaType(raw); err == nil {
			in.disp, in.dParams = d, withExtendedParams(params, raw)
		} else {
			in.disp, in.dParams = lenientMediaType(raw)
		}
	}
	name := ""
	for _, v := range []string{in.dParams["filename"], in.ctParams["name"], in.ctParams["filename"], in.dParams["name"], in.ctParams["file"]} {
		// Clients put the name in several places; "file" is a non-standard one seen in the wild.
		if name == "" {
			name = v
		}
	}
	if dec, err := decodeText(name); err == nil {
		name = dec
	}
	in.filename = name
	return in
}

func headers(h mail.Header, part string, problems *[]*mailintakev1.ParseProblem) []*mailintakev1.Header {
	var out []*mailintakev1.Header
	fields := h.Fields()
	for fields.Next() {
		raw := fields.Value()
		if !utf8.ValidString(raw) {
			*problems = append(*problems, problem(part, "charset", fields.Key()+": 8-bit text without a declared charset was read as Windows-1252"))
		}
		v, err := decodeText(raw)
		if err != nil {
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
	// Raw 8-bit text is read as UTF-8 or Windows-1252 and encoded words in a wrong charset are
	// repaired before net/mail sees them (it refuses invalid UTF-8 and decodes words itself).
	v := h.Get(key)
	if !utf8.ValidString(v) {
		v = eightBit(v)
	}
	v = repairWords(v)
	list, err := parseAddressList(v)
	if err != nil {
		// The obsolete syntax (comments and routes inside addresses) is valid; anything else
		// that net/mail refuses (an unquoted display name with a comma or an "@") is read
		// leniently and reported.
		cleaned := cleanAddressList(v)
		if l, err2 := parseAddressList(cleaned); err2 == nil {
			list = l
		} else {
			*problems = append(*problems, problem(part, "address", key+": "+err.Error()+"; read leniently"))
			list = lenientAddresses(cleaned)
		}
	}
	var out []*mailintakev1.Address
	for _, a := range list {
		name := a.Name
		if strings.Contains(name, "=?") {
			// Encoded words inside a quoted display name ("=?utf-8?Q?J=C3=B6rg?=" <j@x>) are
			// not RFC 2047's, but clients write and read them.
			if dec, err := decodeText(name); err == nil {
				name = dec
			}
		}
		out = append(out, &mailintakev1.Address{Name: name, Address: a.Address})
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
	if len(env.From) == 0 && h.Len() > 0 {
		fromFallback(h, env, part, problems)
	}
	return env
}

// fromFallback fills the From of a message that has no usable one (missing, empty, or nothing
// in it is an address) from Sender, then Reply-To, then Return-Path, and says so in
// Envelope.from_fallback and a problem with code "from". A header without any field (not a
// message header at all) is left alone.
func fromFallback(h mail.Header, env *mailintakev1.Envelope, part string, problems *[]*mailintakev1.ParseProblem) {
	why := "no From"
	switch v := strings.TrimSpace(h.Get("From")); {
	case !h.Has("From"):
	case v == "":
		why = "an empty From"
	default:
		why = fmt.Sprintf("a From without an address (%.80q)", v)
	}
	switch {
	case env.Sender.GetAddress() != "":
		env.From, env.FromFallback = []*mailintakev1.Address{{Name: env.Sender.Name, Address: env.Sender.Address}}, "Sender"
	case len(env.ReplyTo) > 0:
		for _, a := range env.ReplyTo {
			env.From = append(env.From, &mailintakev1.Address{Name: a.Name, Address: a.Address})
		}
		env.FromFallback = "Reply-To"
	default:
		for _, v := range h.Values("Return-Path") {
			if a := lenientMsgID(v); a != "" && strings.Contains(a, "@") {
				env.From, env.FromFallback = []*mailintakev1.Address{{Address: a}}, "Return-Path"
				break
			}
			if a := strings.TrimSpace(v); a != "" && !strings.ContainsAny(a, "<> ") && strings.Contains(a, "@") {
				env.From, env.FromFallback = []*mailintakev1.Address{{Address: a}}, "Return-Path" // without the brackets
				break
			}
		}
	}
	if env.FromFallback == "" {
		*problems = append(*problems, problem(part, "from", "the message has "+why+", and no Sender, Reply-To or Return-Path to take the sender from"))
		return
	}
	*problems = append(*problems, problem(part, "from", "the message has "+why+"; the sender is taken from "+env.FromFallback))
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
	dec, err := decodeText(text)
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
// read before r is used again. Every id the parser gives is found: parts inside forwarded
// messages ("2.1", numbered under the message/rfc822 part as IMAP does), and files unpacked
// from a part ("PART:N"): a winmail.dat's files and uuencoded files in a text part.
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
		_, body, err := findPart(e, "", partID, 0, true)
		if err != nil {
			return nil, nil, err
		}
		return openUnpacked(body, id, i)
	}
	return findPart(e, "", id, 0, true)
}

// findPart finds the part id under e, the entity at path; root is set when e is a message (the
// whole one or a forwarded one), whose body is part path.1 when it is not multipart.
func findPart(e *message.Entity, path, id string, depth int, root bool) (*mailintakev1.Attachment, io.Reader, error) {
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
				return findPart(part, p, id, depth+1, false)
			}
		}
	}
	if root {
		path = joinPath(path, 1)
	}
	info := describePart(e.Header)
	if path != id {
		if (info.ct == "message/rfc822" || info.ct == "message/global") && strings.HasPrefix(id, path+".") {
			inner, _, err := readEntity(e.Body)
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return nil, nil, ErrNoSuchPart
			}
			return findPart(inner, path, id, depth+1, true)
		}
		return nil, nil, ErrNoSuchPart
	}
	return &mailintakev1.Attachment{Id: id, Filename: info.filename, ContentType: info.ct, ContentId: strings.Trim(e.Header.Get("Content-Id"), "<> ")}, e.Body, nil
}

// openUnpacked returns the n-th file unpacked from a part: a winmail.dat's, or a text part's
// uuencoded one.
func openUnpacked(r io.Reader, id string, n int) (*mailintakev1.Attachment, io.Reader, error) {
	body, err := io.ReadAll(io.LimitReader(r, DefaultMaxDecodedBytes))
	if err != nil {
		return nil, nil, err
	}
	if isTNEF("application/ms-tnef", "", body) {
		return openTNEFPart(bytes.NewReader(body), id, n)
	}
	return openUUPart(body, id, n)
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
