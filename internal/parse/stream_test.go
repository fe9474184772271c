package parse

import (
	"encoding/base64"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// An attachment over the inline limit is measured as it streams past: the same size as the whole
// decoded part, no data, no hash (GetAttachment computes it), and no buffer of its size.
func TestLargeAttachmentIsStreamedNotHeld(t *testing.T) {
	bin := make([]byte, 20<<20) // over the scratch pool's largest buffer: held, it would be allocated every time
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(bin)
	enc := base64.StdEncoding.EncodeToString(bin)
	var raw strings.Builder
	raw.WriteString("From: a@example.com\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		raw.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	raw.WriteString(enc + "\r\n--b--\r\n")
	in := []byte(raw.String())
	Parse(in, Options{MaxInlineAttachment: 1 << 20}) // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	msg := Parse(in, Options{MaxInlineAttachment: 1 << 20})
	runtime.ReadMemStats(&after)
	if len(msg.GetAttachments()) != 1 {
		t.Fatalf("attachments: %v", msg.GetAttachments())
	}
	a := msg.GetAttachments()[0]
	if a.GetSize() != uint64(len(bin)) || a.GetSha256() != "" || !a.GetDataOmitted() || a.GetData() != nil {
		t.Errorf("attachment: size %d, sha256 %s, omitted %v, %d bytes of data", a.GetSize(), a.GetSha256(), a.GetDataOmitted(), len(a.GetData()))
	}
	if msg.GetTextBody() != "see attached" && strings.TrimSpace(msg.GetTextBody()) != "see attached" {
		t.Errorf("text body %q", msg.GetTextBody())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
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
