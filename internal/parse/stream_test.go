package parse

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// withAttachment returns a message with a short text body and data attached, base64, under
// partHeader (its Content-Type and Content-Disposition).
func withAttachment(partHeader string, data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var raw strings.Builder
	raw.WriteString("From: a@example.com\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n" + partHeader + "Content-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		raw.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	raw.WriteString(enc + "\r\n--b--\r\n")
	return []byte(raw.String())
}

// An attachment over the inline limit is measured as it streams past: the same size as the whole
// decoded part, no data, no hash (GetAttachment computes it), and no buffer of its size. A text
// file attached (a log) is streamed as a binary one is: it cannot become the body.
func TestLargeAttachmentIsStreamedNotHeld(t *testing.T) {
	bin := make([]byte, 20<<20) // over the scratch pool's largest buffer: held, it would be allocated every time
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(bin)
	for _, header := range []string{
		"Content-Type: application/pdf; name=scan.pdf\r\n",
		"Content-Type: text/plain; name=app.log\r\nContent-Disposition: attachment; filename=app.log\r\n",
	} {
		t.Run(strings.Fields(header)[1], func(t *testing.T) { largeAttachmentStreamed(t, withAttachment(header, bin), len(bin)) })
	}
}

// parseOneAttachment parses in with a 1 MB inline limit, after a first parse that warms the
// pools, and returns the message, its one attachment and the bytes the second parse allocated.
func parseOneAttachment(t *testing.T, in []byte) (*mailintakev1.Message, *mailintakev1.Attachment, uint64) {
	t.Helper()
	Parse(in, Options{MaxInlineAttachment: 1 << 20}) // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	msg := Parse(in, Options{MaxInlineAttachment: 1 << 20})
	runtime.ReadMemStats(&after)
	if len(msg.GetAttachments()) != 1 {
		t.Fatalf("attachments: %v", msg.GetAttachments())
	}
	return msg, msg.GetAttachments()[0], after.TotalAlloc - before.TotalAlloc
}

func largeAttachmentStreamed(t *testing.T, in []byte, size int) {
	msg, a, alloc := parseOneAttachment(t, in)
	if a.GetSize() != uint64(size) || a.GetSha256() != "" || !a.GetDataOmitted() || a.GetData() != nil {
		t.Errorf("attachment: size %d, sha256 %s, omitted %v, %d bytes of data", a.GetSize(), a.GetSha256(), a.GetDataOmitted(), len(a.GetData()))
	}
	if msg.GetTextBody() != "see attached" && strings.TrimSpace(msg.GetTextBody()) != "see attached" {
		t.Errorf("text body %q", msg.GetTextBody())
	}
	if alloc > 4<<20 {
		t.Errorf("parsing allocated %d MB for a 20 MB attachment that is not sent", alloc>>20)
	}
	// Under the decoded-bytes limit the streamed part is truncated like any other, with the
	// problem named.
	msg = Parse(in, Options{MaxInlineAttachment: 1 << 20, MaxDecodedBytes: 2 << 20})
	if a := msg.GetAttachments(); len(a) != 1 || a[0].GetSize() > 2<<20 {
		t.Errorf("limited: %v", a)
	}
	var limited bool
	for _, p := range msg.GetProblems() {
		limited = limited || p.GetCode() == "limit"
	}
	if !limited {
		t.Errorf("no limit problem: %v", msg.GetProblems())
	}
}

// An attachment under the inline limit, text or not, is sent whole with its hash, and parsing
// it allocates about its size once.
func TestInlineAttachmentDecodedOnce(t *testing.T) {
	data := make([]byte, 600<<10)
	rng := rand.NewChaCha8([32]byte{8})
	rng.Read(data)
	for _, header := range []string{
		"Content-Type: application/zip; name=a.zip\r\n",
		"Content-Type: text/plain; name=app.log\r\nContent-Disposition: attachment; filename=app.log\r\n",
	} {
		t.Run(strings.Fields(header)[1], func(t *testing.T) {
			_, a, alloc := parseOneAttachment(t, withAttachment(header, data))
			if !bytes.Equal(a.GetData(), data) || a.GetSha256() != SHA256(data) || a.GetDataOmitted() {
				t.Errorf("attachment: %d bytes of data, sha256 %s, omitted %v", len(a.GetData()), a.GetSha256(), a.GetDataOmitted())
			}
			if alloc > uint64(len(data))*3/2 {
				t.Errorf("parsing allocated %d KB for a %d KB attachment", alloc>>10, len(data)>>10)
			}
		})
	}
}

// A calendar attached is read whole even over the inline limit: its method is a signal.
func TestLargeCalendarAttachmentKeepsItsMethod(t *testing.T) {
	ics := "BEGIN:VCALENDAR\r\nMETHOD:CANCEL\r\nBEGIN:VEVENT\r\nDESCRIPTION:" + strings.Repeat("x", 2<<20) + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	msg := Parse(withAttachment("Content-Type: text/calendar; name=invite.ics\r\nContent-Disposition: attachment; filename=invite.ics\r\n", []byte(ics)), Options{MaxInlineAttachment: 1 << 20})
	if got := msg.GetSignals().GetCalendarMethod(); got != "CANCEL" {
		t.Errorf("calendar method %q, want CANCEL", got)
	}
	if a := msg.GetAttachments(); len(a) != 1 || !a[0].GetDataOmitted() || a[0].GetSize() != uint64(len(ics)) {
		t.Errorf("attachments: %v", a)
	}
}
