package parse

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/emersion/go-message"

	"github.com/mailintake/mailintake/internal/bench"
)

// benchCorpus generates attachment-heavy service-desk mail: text and HTML bodies and 1–3
// base64 attachments of 50 KB–500 KB each, seeded so runs compare.
func benchCorpus() ([][]byte, int64) {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	var total int64
	for i := range 40 {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: Customer %d <c%d@example.net>\r\nTo: help@desk.example\r\nSubject: Ticket %d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n", i, i, i)
		b.WriteString("--B\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, the printer is broken again.\r\n\r\nOn Mon, 2 Mar 2026 at 10:00, Help <help@desk.example> wrote:\r\n> restart it\r\n--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello, the printer is <b>broken</b> again.</p>\r\n--A--\r\n")
		for a := range 1 + r.IntN(3) {
			data := make([]byte, 50_000+r.IntN(450_000))
			for j := range data {
				data[j] = byte(r.IntN(256))
			}
			fmt.Fprintf(&b, "--B\r\nContent-Type: application/octet-stream; name=\"file%d.bin\"\r\nContent-Disposition: attachment; filename=\"file%d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", a, a)
			enc := base64.StdEncoding.EncodeToString(data)
			for len(enc) > 76 {
				b.WriteString(enc[:76] + "\r\n")
				enc = enc[76:]
			}
			b.WriteString(enc + "\r\n")
		}
		b.WriteString("--B--\r\n")
		out = append(out, b.Bytes())
		total += int64(b.Len())
	}
	return out, total
}

// BenchmarkParse parses the corpus (the whole parser: decoding, bodies, attachments with their
// SHA-256, signals, reply split, sanitising, UTF-8 checks).
func BenchmarkParse(b *testing.B) {
	corpus, total := benchCorpus()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range corpus {
			Parse(raw, Options{})
		}
	}
}

// BenchmarkGoMessageWalk is the floor: go-message reading every part's decoded bytes and
// discarding them.
func BenchmarkGoMessageWalk(b *testing.B) {
	corpus, total := benchCorpus()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range corpus {
			e, err := message.Read(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			walkDiscard(e)
		}
	}
}

func walkDiscard(e *message.Entity) {
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			walkDiscard(p)
		}
	}
	io.Copy(io.Discard, e.Body)
}

// BenchmarkParseServiceDesk parses the first 300 messages of make bench's corpus (text, HTML,
// replies, attachments of 50 KB–2 MB, inline images) with the server's default inline limit
// (1 MB): the parser's share of the server's CPU per message.
func BenchmarkParseServiceDesk(b *testing.B) {
	corpus := bench.Corpus(1, 300)
	var total int64
	for _, m := range corpus {
		total += int64(len(m))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range corpus {
			Parse(raw, Options{MaxInlineAttachment: 1 << 20})
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(corpus)), "µs/msg")
}

// BenchmarkSplitReply splits the text bodies of make bench's corpus.
func BenchmarkSplitReply(b *testing.B) {
	var texts []string
	for _, raw := range bench.Corpus(1, 300) {
		if t := Parse(raw, Options{}).GetTextBody(); t != "" {
			texts = append(texts, t)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, t := range texts {
			SplitReply(t)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(texts)), "µs/text")
}

// BenchmarkStripLineBreaks takes the line breaks out of 1 MB of base64 in 76-character lines,
// as the base64 decoder does before its SIMD pass.
func BenchmarkStripLineBreaks(b *testing.B) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var s strings.Builder
	for len(enc) > 76 {
		s.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	src := []byte(s.String())
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		stripLineBreaks(dst, src)
	}
}
