package parse

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

// uuencode encodes data as uuencode does (45 bytes a line, "`" for zero, then "end").
func uuencode(name string, data []byte) string {
	var b strings.Builder
	b.WriteString("begin 644 " + name + "\n")
	enc := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	for len(data) > 0 {
		n := min(len(data), 45)
		line := data[:n]
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			var g [3]byte
			copy(g[:], line[i:min(i+3, n)])
			b.WriteByte(enc(g[0] >> 2))
			b.WriteByte(enc((g[0]<<4 | g[1]>>4) & 0x3f))
			b.WriteByte(enc((g[1]<<2 | g[2]>>6) & 0x3f))
			b.WriteByte(enc(g[2] & 0x3f))
		}
		b.WriteByte('\n')
	}
	b.WriteString("`\nend\n")
	return b.String()
}

func TestUuencodedFilesBecomeAttachments(t *testing.T) {
	report := []byte("Hello, world!\nThe second line of the report.\x00\x01\xff binary too, and more than one line of it: " + strings.Repeat("x", 60))
	logo := []byte("GIF89a tiny")
	raw := crlf("From: a@example.com\nSubject: files\n\nHere are the files.\n\n" + uuencode("report.txt", report) +
		"\nand the logo:\n" + uuencode("logo.gif", logo) + "Bye\n" +
		"begin-base64 600 notes.bin\n" + base64.StdEncoding.EncodeToString([]byte("base64 notes")) + "\n====\n" +
		"begin 644 not-a-file\nbecause this is prose, not data\n")
	m := Parse(raw, Options{MaxInlineAttachment: 20})
	want := "Here are the files.\r\n\r\n\r\nand the logo:\r\nBye\r\nbegin 644 not-a-file\r\nbecause this is prose, not data\r\n"
	if m.TextBody != want {
		t.Errorf("text = %q, want %q", m.TextBody, want)
	}
	if len(m.Attachments) != 3 {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	r, l, n := m.Attachments[0], m.Attachments[1], m.Attachments[2]
	if r.Id != "1:1" || r.Filename != "report.txt" || r.ContentType != "text/plain" || r.Size != uint64(len(report)) || !r.DataOmitted {
		t.Errorf("report = %v", r)
	}
	if l.Id != "1:2" || l.Filename != "logo.gif" || l.ContentType != "image/gif" || !bytes.Equal(l.Data, logo) || l.Sha256 == "" {
		t.Errorf("logo = %v", l)
	}
	if n.Id != "1:3" || n.Filename != "notes.bin" || string(n.Data) != "base64 notes" {
		t.Errorf("notes = %v", n)
	}
	for _, p := range m.Problems {
		t.Errorf("problem %v", p)
	}
	// GetAttachment serves them, over the inline limit too.
	for id, data := range map[string][]byte{"1:1": report, "1:2": logo, "1:3": []byte("base64 notes")} {
		a, body, err := OpenPart(bytes.NewReader(raw), id)
		if err != nil {
			t.Errorf("OpenPart(%s): %v", id, err)
			continue
		}
		b, _ := io.ReadAll(body)
		if !bytes.Equal(b, data) || a.Id != id || a.Filename == "" {
			t.Errorf("OpenPart(%s) = %v %q", id, a, b)
		}
	}
	if _, _, err := OpenPart(bytes.NewReader(raw), "1:4"); err != ErrNoSuchPart {
		t.Errorf("OpenPart(1:4): %v", err)
	}
}

func TestUuencodedInMultipartAndBroken(t *testing.T) {
	raw := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=iso-8859-1\n\nSee file.\n" +
		uuencode("a.bin", []byte("abc")) + "--b\nContent-Type: text/plain\n\n" +
		// No end line, and trailing spaces (zeros) stripped by a mailer: "#80  " is "a\0\0".
		"begin 644 cut.bin\n#80\n--b--\n")
	m := Parse(raw, Options{})
	if strings.TrimSpace(m.TextBody) != "See file." {
		t.Errorf("text = %q", m.TextBody)
	}
	if len(m.Attachments) != 2 || m.Attachments[0].Id != "1:1" || string(m.Attachments[0].Data) != "abc" ||
		m.Attachments[1].Id != "2:1" || m.Attachments[1].Filename != "cut.bin" || string(m.Attachments[1].Data) != "a\x00\x00" {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	var cut bool
	for _, p := range m.Problems {
		cut = cut || p.Part == "2" && strings.Contains(p.Message, "no end line")
	}
	if !cut {
		t.Errorf("problems = %v", m.Problems)
	}
	a, body, err := OpenPart(bytes.NewReader(raw), "1:1")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(body); string(b) != "abc" || a.Filename != "a.bin" {
		t.Errorf("OpenPart(1:1) = %v %q", a, b)
	}
	if findUU([]byte("nothing to see")) != nil || findUU([]byte("begin 644 x\n")) != nil || findUU([]byte("begin 999 x\nM86)C\nend\n")) != nil ||
		findUU([]byte("begin 644 x\n\nend\n")) != nil || findUU([]byte("begin 644 x\r\n`\r\nend\r\n")) != nil {
		t.Error("a file found in plain text")
	}
}

// A block cut short ends at the first line that is not data: the text after it stays text.
func TestUuencodedWithoutEndKeepsTheText(t *testing.T) {
	enc := uuencode("a.bin", []byte(strings.Repeat("abc", 20)))
	enc = enc[:strings.Index(enc, "`\nend")]
	m := Parse(crlf("Subject: x\n\nbefore\n"+enc+"Regards,\nAnn\n"), Options{})
	if m.TextBody != "before\r\nRegards,\r\nAnn\r\n" || len(m.Attachments) != 1 || string(m.Attachments[0].Data) != strings.Repeat("abc", 20) {
		t.Errorf("text %q, attachments %v", m.TextBody, m.Attachments)
	}
}
