package smtpsend

import (
	"strings"
	"testing"
	"time"
)

func TestPrepareRawAddsOnlyWhatIsMissing(t *testing.T) {
	raw := "From: Support <support@example.com>\r\nTo: a@example.org\r\nCc: b@example.org, A@example.org\r\nSubject: x\r\n\r\nbody\r\n"
	date := time.Date(2026, 3, 3, 10, 15, 0, 0, time.UTC)
	o, err := PrepareRaw([]byte(raw), RawOptions{Date: date, MessageID: "given@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	want := "Message-ID: <given@example.com>\r\nDate: Tue, 03 Mar 2026 10:15:00 +0000\r\n" + raw
	if string(o.Bytes) != want {
		t.Errorf("got\n%q\nwant\n%q", o.Bytes, want)
	}
	if o.MessageID != "given@example.com" || o.From != "support@example.com" || strings.Join(o.Recipients, " ") != "a@example.org b@example.org" {
		t.Errorf("%+v", o)
	}

	// A complete message goes as it is, byte for byte.
	full := "Date: Tue, 03 Mar 2026 10:15:00 +0100\r\nMessage-ID: <m@example.com>\r\n" + raw
	o, err = PrepareRaw([]byte(full), RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(o.Bytes) != full || o.MessageID != "m@example.com" {
		t.Errorf("changed: %q", o.Bytes)
	}

	// A generated Message-ID has the From address's domain; LF endings are kept.
	lf := strings.ReplaceAll(raw, "\r\n", "\n")
	o, err = PrepareRaw([]byte(lf), RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(o.MessageID, "@example.com") || !strings.HasPrefix(string(o.Bytes), "Message-ID: <"+o.MessageID+">\nDate: ") || !strings.HasSuffix(string(o.Bytes), "\n"+lf) {
		t.Errorf("got %q", o.Bytes)
	}
}

func TestPrepareRawRemovesBcc(t *testing.T) {
	raw := "Date: Tue, 03 Mar 2026 10:15:00 +0100\r\nMessage-ID: <m@example.com>\r\nFrom: support@example.com\r\nTo: a@example.org\r\n" +
		"bcc: hidden@example.net,\r\n\tother@example.net\r\nSubject: x\r\n\r\nBcc: in the body stays\r\n"
	o, err := PrepareRaw([]byte(raw), RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := "Date: Tue, 03 Mar 2026 10:15:00 +0100\r\nMessage-ID: <m@example.com>\r\nFrom: support@example.com\r\nTo: a@example.org\r\n" +
		"Subject: x\r\n\r\nBcc: in the body stays\r\n"
	if string(o.Bytes) != want {
		t.Errorf("got %q", o.Bytes)
	}
	if strings.Join(o.Recipients, " ") != "a@example.org hidden@example.net other@example.net" {
		t.Errorf("recipients %q", o.Recipients)
	}
}

func TestPrepareRawEnvelope(t *testing.T) {
	raw := "From: a@example.com, b@example.com\r\nSender: desk@example.com\r\nSubject: x\r\n\r\nbody\r\n"
	o, err := PrepareRaw([]byte(raw), RawOptions{Recipients: []string{"x@example.org", "Y <y@example.org>"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.From != "desk@example.com" || strings.Join(o.Recipients, " ") != "x@example.org y@example.org" {
		t.Errorf("%q %q", o.From, o.Recipients)
	}
	o, err = PrepareRaw([]byte(raw), RawOptions{Recipients: []string{"x@example.org"}, EnvelopeFrom: "bounces@example.com"})
	if err != nil || o.From != "bounces@example.com" {
		t.Errorf("%v %+v", err, o)
	}
}

func TestPrepareRawRefuses(t *testing.T) {
	for name, raw := range map[string]string{
		"no from":       "To: a@example.org\r\nSubject: x\r\n\r\nbody\r\n",
		"bad from":      "From: nobody\r\nTo: a@example.org\r\n\r\nbody\r\n",
		"no recipients": "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n",
		"broken header": " folded first line\r\nFrom: a@example.com\r\n\r\n",
		"long line":     "From: a@example.com\r\nTo: b@example.org\r\n\r\n" + strings.Repeat("x", 999) + "\r\n",
		"not a message": "hello world",
	} {
		if _, err := PrepareRaw([]byte(raw), RawOptions{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// 998 octets is allowed.
	if _, err := PrepareRaw([]byte("From: a@example.com\r\nTo: b@example.org\r\n\r\n"+strings.Repeat("x", 998)+"\r\n"), RawOptions{}); err != nil {
		t.Error(err)
	}
}
