package parse

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	tt "github.com/mailintake/mailintake/internal/tnef/tneftest"
)

// winmailMail is an Outlook mail with a text part and a winmail.dat holding an RTF body (HTML
// encapsulated), a PDF and a meeting request class.
func winmailMail(class string) []byte {
	dat := tt.New().
		Attr(tt.LevelMessage, tt.AttMessageClass, tt.String8(class)).
		Attr(tt.LevelMessage, tt.AttSubject, tt.String8("Printer down")).
		Attr(tt.LevelMessage, tt.AttMAPIProps, tt.Props(tt.Prop{Type: tt.PtypBinary, ID: 0x1009, Value: tt.StoredRTF(
			`{\rtf1\ansi\ansicpg1252\fromhtml1 {\*\htmltag19 <html>}{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0 The printer on floor 3 is down.}{\*\htmltag58 </body>}{\*\htmltag27 </html>}}`)})).
		Attr(tt.LevelAttachment, tt.AttAttachRendData, make([]byte, 14)).
		Attr(tt.LevelAttachment, tt.AttAttachTitle, tt.String8("ERRORL~1.PDF")).
		Attr(tt.LevelAttachment, tt.AttAttachData, []byte("%PDF-1.4 error log")).
		Attr(tt.LevelAttachment, tt.AttAttachment, tt.Props(tt.Prop{Type: tt.PtypUnicode, ID: 0x3707, Value: tt.UTF16("Error log.pdf")})).
		Bytes()
	enc := base64.StdEncoding.EncodeToString(dat)
	var wrapped strings.Builder
	for len(enc) > 76 {
		wrapped.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	wrapped.WriteString(enc)
	return crlf(`From: Outlook User <user@customer.example>
To: support@example.com
Subject: Printer down
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=us-ascii

The printer on floor 3 is down.
--b
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Disposition: attachment; filename="winmail.dat"
Content-Transfer-Encoding: base64

` + wrapped.String() + `
--b--
`)
}

func TestWinmailDatIsUnpacked(t *testing.T) {
	raw := winmailMail("IPM.Microsoft Schedule.MtgReq")
	m := Parse(raw, Options{})
	if len(m.Problems) != 0 {
		t.Errorf("problems: %v", m.Problems)
	}
	if m.TextBody != "The printer on floor 3 is down." {
		t.Errorf("text body = %q", m.TextBody)
	}
	if !strings.Contains(m.HtmlBody, "The printer on floor 3 is down.") {
		t.Errorf("HTML body from the encapsulated RTF = %q", m.HtmlBody)
	}
	if len(m.Attachments) != 1 {
		t.Fatalf("attachments = %v, want the PDF in place of winmail.dat", m.Attachments)
	}
	a := m.Attachments[0]
	if a.Id != "2:1" || a.Filename != "Error log.pdf" || a.ContentType != "application/pdf" || string(a.Data) != "%PDF-1.4 error log" || a.Size != 18 {
		t.Errorf("attachment = %+v", a)
	}
	if m.Signals.CalendarMethod != "REQUEST" {
		t.Errorf("calendar method = %q", m.Signals.CalendarMethod)
	}
	// GetAttachment serves the unpacked file, and the winmail.dat itself, by id.
	got, r, err := OpenPart(bytes.NewReader(raw), "2:1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	if got.Filename != "Error log.pdf" || string(data) != "%PDF-1.4 error log" {
		t.Errorf("OpenPart(2:1) = %+v %q", got, data)
	}
	if _, r, err := OpenPart(bytes.NewReader(raw), "2"); err != nil {
		t.Error(err)
	} else if data, _ := io.ReadAll(r); !bytes.HasPrefix(data, []byte{0x78, 0x9f, 0x3e, 0x22}) {
		t.Errorf("OpenPart(2) is not the winmail.dat: %q", data[:8])
	}
	for _, id := range []string{"2:2", "2:0", "2:x", "1:1"} {
		if _, _, err := OpenPart(bytes.NewReader(raw), id); err == nil {
			t.Errorf("OpenPart(%q) found a part", id)
		}
	}
}

func TestDamagedWinmailDatIsKept(t *testing.T) {
	raw := winmailMail("IPM.Note")
	// Replace the winmail.dat's content with bytes that are not TNEF.
	i := bytes.Index(raw, []byte("base64\r\n\r\n")) + len("base64\r\n\r\n")
	j := bytes.Index(raw[i:], []byte("\r\n--b--"))
	raw = append(append(append([]byte{}, raw[:i]...), []byte(base64.StdEncoding.EncodeToString([]byte("not a tnef stream")))...), raw[i+j:]...)
	m := Parse(raw, Options{})
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "winmail.dat" || string(m.Attachments[0].Data) != "not a tnef stream" {
		t.Errorf("attachments = %v", m.Attachments)
	}
}
