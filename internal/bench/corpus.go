// Package bench holds what `make bench` measures with: a generator of realistic service-desk
// mail, the raw IMAP floor client, and the process figures (CPU, RSS) read from /proc. The
// measurements themselves run in bench_test.go (build tag bench).
package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

// Corpus generates n messages, deterministically from seed: short text mails in several
// charsets, HTML mails with a text alternative, replies with quoted history, mails with one to
// three attachments of 50 KB to 2 MB, and HTML mails with inline images.
func Corpus(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0x6d61696c))
	out := make([][]byte, n)
	for i := range out {
		g := &gen{rng: rng, i: i}
		switch r := rng.IntN(100); {
		case r < 35:
			out[i] = g.text()
		case r < 55:
			out[i] = g.html()
		case r < 75:
			out[i] = g.reply()
		case r < 93:
			out[i] = g.attachments()
		default:
			out[i] = g.inline()
		}
	}
	return out
}

type gen struct {
	rng *rand.Rand
	i   int
}

var words = strings.Fields(`the printer on floor three is broken again and nobody can print invoices
please restart the server our VPN drops every hour since the update we need access to the shared
drive for the new colleague the laptop does not boot after the firmware upgrade thanks for your help
best regards could you check the mailbox quota the backup failed last night with error code`)

var charsets = []struct {
	name string
	enc  encoding.Encoding
	text string
}{
	{"utf-8", nil, "Grüße aus Köln — the café's printer is broken ✓"},
	{"iso-8859-1", charmap.ISO8859_1, "Grüße aus Köln, le café est fermé, señor"},
	{"windows-1252", charmap.Windows1252, "Grüße – „Drucker“ défectueux… €"},
	{"koi8-r", charmap.KOI8R, "Принтер не работает, пожалуйста помогите"},
	{"iso-2022-jp", japanese.ISO2022JP, "プリンターが壊れました。至急対応をお願いします"},
}

func (g *gen) sentence(n int) string {
	var b strings.Builder
	for j := range n {
		if j > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.rng.IntN(len(words))])
	}
	return b.String()
}

func (g *gen) paragraphs(bytesWanted int) string {
	var b strings.Builder
	for b.Len() < bytesWanted {
		b.WriteString(g.sentence(8 + g.rng.IntN(12)))
		b.WriteString(".\r\n")
		if g.rng.IntN(4) == 0 {
			b.WriteString("\r\n")
		}
	}
	return b.String()
}

func (g *gen) header(b *bytes.Buffer, subject, contentType string) {
	date := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(g.i) * time.Minute)
	fmt.Fprintf(b, "From: Customer %d <customer%d@example.net>\r\nTo: support@example.com\r\n", g.i%97, g.i%97)
	fmt.Fprintf(b, "Subject: %s [#%d]\r\nDate: %s\r\nMessage-ID: <bench.%d.%d@example.net>\r\nMIME-Version: 1.0\r\n",
		subject, 1000+g.i, date.Format(time.RFC1123Z), g.i, g.rng.Uint32())
	fmt.Fprintf(b, "Content-Type: %s\r\n", contentType)
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func (g *gen) text() []byte {
	cs := charsets[g.rng.IntN(len(charsets))]
	body := cs.text + "\r\n\r\n" + g.paragraphs(500+g.rng.IntN(4000))
	raw := []byte(body)
	if cs.enc != nil {
		if enc, err := cs.enc.NewEncoder().Bytes(raw); err == nil {
			raw = enc
		}
	}
	var b bytes.Buffer
	g.header(&b, "Question "+g.sentence(3), "text/plain; charset="+cs.name)
	if cs.name == "iso-2022-jp" {
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
		b.Write(raw)
	} else {
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
		b.WriteString(qp(string(raw)))
	}
	return b.Bytes()
}

func (g *gen) html() []byte {
	text := g.paragraphs(2000 + g.rng.IntN(15000))
	html := "<html><head><style>p{font-family:Arial}</style></head><body><p>" +
		strings.ReplaceAll(text, "\r\n\r\n", "</p><p>") + "</p><p><b>Kind regards</b><br>Customer</p></body></html>"
	var b bytes.Buffer
	g.header(&b, "Issue "+g.sentence(4), `multipart/alternative; boundary="alt"`)
	b.WriteString("\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(qp(text))
	b.WriteString("\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(qp(html))
	b.WriteString("\r\n--alt--\r\n")
	return b.Bytes()
}

func (g *gen) reply() []byte {
	var b bytes.Buffer
	g.header(&b, "RE: "+g.sentence(4), "text/plain; charset=utf-8")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(g.paragraphs(200 + g.rng.IntN(1000)))
	b.WriteString("\r\nBest regards,\r\nCustomer\r\n\r\n")
	for depth := range 1 + g.rng.IntN(4) {
		quote := strings.Repeat(">", depth+1) + " "
		fmt.Fprintf(&b, "%sOn Mon, 2 Nov 2026 at 10:%02d, Help Desk <support@example.com> wrote:\r\n", strings.Repeat(">", depth), depth)
		for _, line := range strings.Split(g.paragraphs(500+g.rng.IntN(3000)), "\r\n") {
			b.WriteString(quote + line + "\r\n")
		}
	}
	return b.Bytes()
}

// size returns a size between lo and hi, log-uniformly.
func (g *gen) size(lo, hi int) int {
	return int(math.Exp(math.Log(float64(lo)) + g.rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}

func (g *gen) blob(n int) string {
	data := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	b.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
	return b.String()
}

var attachmentTypes = []struct{ ext, ct string }{
	{"pdf", "application/pdf"}, {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
	{"png", "image/png"}, {"zip", "application/zip"}, {"log", "text/plain"},
}

func (g *gen) attachments() []byte {
	var b bytes.Buffer
	g.header(&b, "Logs for "+g.sentence(3), `multipart/mixed; boundary="mix"`)
	b.WriteString("\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(g.paragraphs(300 + g.rng.IntN(2000)))
	for j := range 1 + g.rng.IntN(3) {
		at := attachmentTypes[g.rng.IntN(len(attachmentTypes))]
		fmt.Fprintf(&b, "\r\n--mix\r\nContent-Type: %s; name=\"file%d.%s\"\r\nContent-Disposition: attachment; filename=\"file%d.%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			at.ct, j, at.ext, j, at.ext)
		b.WriteString(g.blob(g.size(50<<10, 2<<20)))
	}
	b.WriteString("--mix--\r\n")
	return b.Bytes()
}

func (g *gen) inline() []byte {
	var b bytes.Buffer
	g.header(&b, "Screenshot "+g.sentence(3), `multipart/related; boundary="rel"`)
	b.WriteString("\r\n--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "<html><body><p>%s</p><img src=\"cid:shot%d@example.net\"></body></html>\r\n", g.paragraphs(500), g.i)
	fmt.Fprintf(&b, "--rel\r\nContent-Type: image/png\r\nContent-ID: <shot%d@example.net>\r\nContent-Disposition: inline; filename=\"shot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", g.i)
	b.WriteString(g.blob(g.size(50<<10, 300<<10)))
	b.WriteString("--rel--\r\n")
	return b.Bytes()
}
