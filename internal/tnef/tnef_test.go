package tnef_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/tnef"
	tt "github.com/mailintake/mailintake/internal/tnef/tneftest"
)

// The two worked examples of MS-OXRTFCP section 4: literals, references into the preloaded
// dictionary, and a reference that overlaps the bytes it is writing.
func TestDecompressRTFSpecificationExamples(t *testing.T) {
	simple := []byte{
		0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7, 0xa7,
		0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a, 0xf3, 0x20,
		0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
	}
	crossWrite := []byte{
		0x1a, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xe2, 0xd4, 0x4b, 0x51,
		0x41, 0x00, 0x04, 0x20, 0x57, 0x58, 0x59, 0x5a, 0x0d, 0x6e, 0x7d, 0x01, 0x0e, 0xb0,
	}
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{simple, "{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n"},
		{crossWrite, "{\\rtf1 WXYZWXYZWXYZWXYZWXYZ}"},
		{tt.StoredRTF("{\\rtf1 stored}"), "{\\rtf1 stored}"},
	} {
		got, err := tnef.DecompressRTF(c.in)
		if err != nil || string(got) != c.want {
			t.Errorf("DecompressRTF = %q, %v; want %q", got, err, c.want)
		}
	}
	for i := range simple {
		tnef.DecompressRTF(simple[:i]) // a truncated value must not panic
	}
	if _, err := tnef.DecompressRTF([]byte("0123456789abcdefghij")); err == nil {
		t.Error("an unknown compression type was accepted")
	}
}

func TestRTFBody(t *testing.T) {
	html, text := tnef.RTFBody([]byte(`{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0 Arial;}}` +
		`{\*\htmltag19 <html>}{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0 Caf\'e9 {\*\htmltag84 <b>}\htmlrtf {\b\htmlrtf0 down}\htmlrtf0 ` +
		`{\*\htmltag92 </b>}\htmlrtf }\htmlrtf0 {\*\htmltag58 </body>}{\*\htmltag27 </html>}}`))
	if text != "" || html != "<html><body>Café <b>down</b></body></html>" {
		t.Errorf("encapsulated HTML = %q (text %q)", html, text)
	}
	html, text = tnef.RTFBody([]byte(`{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Arial;}}{\colortbl ;\red255\green0\blue0;}` +
		"\r\n" + `{\*\generator Riched20;}\viewkind4\uc1\pard\f0\fs20 Printer on floor 3 \'96 jammed\par` +
		"\r\n" + `Price: 5\u8364? \{ok\}\par{\field{\*\fldinst{HYPERLINK "https://x.example"}}{\fldrslt link}}}`))
	if html != "" || text != "Printer on floor 3 – jammed\nPrice: 5€ {ok}\nlink" {
		t.Errorf("RTF text = %q (html %q)", text, html)
	}
}

// outlookStream is a winmail.dat as Outlook writes one: a message with an HTML body, two files
// (one with its data before its name, one inline image) and an attached Outlook item.
func outlookStream() []byte {
	embedded := tt.New().
		Attr(tt.LevelMessage, tt.AttMessageClass, tt.String8("IPM.Note")).
		Attr(tt.LevelMessage, tt.AttSubject, tt.String8("Original request")).
		Attr(tt.LevelMessage, tt.AttMAPIProps, tt.Props(tt.Prop{Type: tt.PtypUnicode, ID: 0x1000, Value: tt.UTF16("The VPN drops every hour.")})).
		Attr(tt.LevelAttachment, tt.AttAttachRendData, make([]byte, 14)).
		Attr(tt.LevelAttachment, tt.AttAttachTitle, tt.String8("log.txt")).
		Attr(tt.LevelAttachment, tt.AttAttachData, []byte("12:00 link down\n")).
		Bytes()
	return tt.New().
		Attr(tt.LevelMessage, tt.AttOemCodepage, append(tt.Uint32(1252), 0, 0, 0, 0)).
		Attr(tt.LevelMessage, tt.AttMessageClass, tt.String8("IPM.Note")).
		Attr(tt.LevelMessage, tt.AttSubject, tt.String8("R\xe9sum\xe9 attached")).
		Attr(tt.LevelMessage, tt.AttMAPIProps, tt.Props(
			tt.Prop{Type: tt.PtypInteger32, ID: 0x3FDE, Value: tt.Uint32(65001)},
			tt.Prop{Type: tt.PtypString8, ID: 0x8001, Name: "x-named", Value: tt.String8("skipped")},
			tt.Prop{Type: tt.PtypBinary, ID: 0x1013, Value: []byte("<html><body><p>Please see the r\xc3\xa9sum\xc3\xa9.</p><img src=\"cid:logo@x\"></body></html>\x00")},
		)).
		Attr(tt.LevelAttachment, tt.AttAttachRendData, make([]byte, 14)).
		Attr(tt.LevelAttachment, tt.AttAttachData, []byte("%PDF-1.4 resume")).
		Attr(tt.LevelAttachment, tt.AttAttachTitle, tt.String8("RESUME~1.PDF")).
		Attr(tt.LevelAttachment, tt.AttAttachment, tt.Props(
			tt.Prop{Type: tt.PtypUnicode, ID: 0x3707, Value: tt.UTF16("Résumé 2026.pdf")},
			tt.Prop{Type: tt.PtypString8, ID: 0x370E, Value: tt.String8("Application/PDF")},
		)).
		Attr(tt.LevelAttachment, tt.AttAttachRendData, make([]byte, 14)).
		Attr(tt.LevelAttachment, tt.AttAttachTitle, tt.String8("image001.png")).
		Attr(tt.LevelAttachment, tt.AttAttachData, []byte("\x89PNG logo")).
		Attr(tt.LevelAttachment, tt.AttAttachment, tt.Props(
			tt.Prop{Type: tt.PtypString8, ID: 0x3712, Value: tt.String8("<logo@x>")},
		)).
		Attr(tt.LevelAttachment, tt.AttAttachRendData, make([]byte, 14)).
		Attr(tt.LevelAttachment, tt.AttAttachment, tt.Props(
			tt.Prop{Type: tt.PtypInteger32, ID: 0x3705, Value: tt.Uint32(5)},
			tt.Prop{Type: tt.PtypObject, ID: 0x3701, Value: append(make([]byte, 16), embedded...)},
		)).
		Bytes()
}

func TestDecodeOutlookStream(t *testing.T) {
	m, err := tnef.Decode(outlookStream())
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Résumé attached" || m.MessageClass != "IPM.Note" || len(m.Problems) != 0 {
		t.Errorf("subject %q, class %q, problems %v", m.Subject, m.MessageClass, m.Problems)
	}
	if string(m.HTML) != "<html><body><p>Please see the résumé.</p><img src=\"cid:logo@x\"></body></html>" || m.HTMLCharset != "utf-8" {
		t.Errorf("HTML %q in %q", m.HTML, m.HTMLCharset)
	}
	if len(m.Attachments) != 3 {
		t.Fatalf("%d attachments, want 3", len(m.Attachments))
	}
	pdf, img, item := m.Attachments[0], m.Attachments[1], m.Attachments[2]
	if pdf.Filename != "Résumé 2026.pdf" || pdf.ContentType != "application/pdf" || string(pdf.Data) != "%PDF-1.4 resume" {
		t.Errorf("pdf = %q %q %q", pdf.Filename, pdf.ContentType, pdf.Data)
	}
	if img.Filename != "image001.png" || img.ContentID != "logo@x" || string(img.Data) != "\x89PNG logo" {
		t.Errorf("image = %q cid %q %q", img.Filename, img.ContentID, img.Data)
	}
	if item.Message == nil || item.Filename != "Original request" || item.Message.Text != "The VPN drops every hour." ||
		len(item.Message.Attachments) != 1 || string(item.Message.Attachments[0].Data) != "12:00 link down\n" {
		t.Errorf("embedded item = %q %+v", item.Filename, item.Message)
	}
}

func TestDecodeDamagedStreams(t *testing.T) {
	if _, err := tnef.Decode([]byte("not tnef at all")); err != tnef.ErrNotTNEF {
		t.Errorf("Decode(garbage) error = %v", err)
	}
	full := outlookStream()
	for i := 6; i < len(full); i++ {
		if _, err := tnef.Decode(full[:i]); err != nil {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	cut, _ := tnef.Decode(full[:len(full)-5])
	if len(cut.Problems) == 0 || len(cut.Attachments) != 3 {
		t.Errorf("a stream cut inside its last attribute: problems %v, %d attachments", cut.Problems, len(cut.Attachments))
	}
	// A damaged length keeps what came before it.
	damaged := bytes.Clone(full)
	idx := bytes.Index(damaged, []byte("RESUME~1.PDF"))
	damaged[idx-1] = 0x7f // the high byte of the title attribute's length
	m, _ := tnef.Decode(damaged)
	if m.Subject != "Résumé attached" || len(m.Attachments) != 1 || !strings.Contains(strings.Join(m.Problems, ";"), "claims") {
		t.Errorf("damaged stream: subject %q, %d attachments, problems %v", m.Subject, len(m.Attachments), m.Problems)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(outlookStream())
	f.Add(tt.StoredRTF(`{\rtf1\fromhtml1 {\*\htmltag1 <b>}x}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := tnef.Decode(b); err == nil {
			for _, a := range m.Attachments {
				_ = a.Filename
			}
			if len(m.RTF) > 0 {
				tnef.RTFBody(m.RTF)
			}
		}
		if rtf, err := tnef.DecompressRTF(b); err == nil {
			tnef.RTFBody(rtf)
		}
		tnef.RTFBody(b)
	})
}
