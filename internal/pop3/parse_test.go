package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		line     string
		ok       bool
		code     string
		text     string
		protocol bool
	}{
		{line: "+OK", ok: true},
		{line: "+OK POP3 ready <1.2@host>", ok: true, text: "POP3 ready <1.2@host>"},
		{line: "+ok lower case", ok: true, text: "lower case"},
		{line: "-ERR", ok: false},
		{line: "-ERR [IN-USE] Mailbox locked", code: "IN-USE", text: "Mailbox locked"},
		{line: "-ERR [sys/temp] later", code: "SYS/TEMP", text: "later"},
		{line: "-ERR [AUTH]", code: "AUTH"},
		{line: "-ERR [not a code] text", text: "[not a code] text"},
		{line: "-ERR [] empty", text: "[] empty"},
		{line: "-ERR [UNCLOSED text", text: "[UNCLOSED text"},
		{line: "-ERR bad \x1b[31mcolour\x00", text: "bad \uFFFD[31mcolour\uFFFD"},
		{line: "+OKAY", protocol: true},
		{line: "OK", protocol: true},
		{line: "", protocol: true},
		{line: "* OK IMAP4rev1", protocol: true},
	} {
		st, err := parseStatus([]byte(tc.line))
		var pe *ProtocolError
		if tc.protocol {
			if !errors.As(err, &pe) {
				t.Errorf("%q: err %v, want a ProtocolError", tc.line, err)
			}
			continue
		}
		if err != nil || st.ok != tc.ok || st.code != tc.code || st.text != tc.text {
			t.Errorf("%q = %+v, %v; want ok %v code %q text %q", tc.line, st, err, tc.ok, tc.code, tc.text)
		}
	}
}

func TestParseContinuation(t *testing.T) {
	for _, tc := range []struct {
		line string
		cont bool
		ch   string
		bad  bool
	}{
		{"+", true, "", false},
		{"+ ", true, "", false},
		{"+ VXNlcm5hbWU6", true, "Username:", false},
		{"+ not*base64", true, "", true},
		{"+OK", false, "", false},
		{"+OK logged in", false, "", false},
		{"+x", false, "", false},
		{"-ERR", false, "", false},
	} {
		ch, cont, err := parseContinuation([]byte(tc.line))
		if cont != tc.cont || (err != nil) != tc.bad || string(ch) != tc.ch {
			t.Errorf("%q = %q, %v, %v", tc.line, ch, cont, err)
		}
	}
}

func TestParseLines(t *testing.T) {
	if n, s, err := parseStat("3 1234"); n != 3 || s != 1234 || err != nil {
		t.Errorf("parseStat = %d %d %v", n, s, err)
	}
	for _, bad := range []string{"", "3", "-1 2", "x 2", "3 99999999999999999999"} {
		if _, _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
	if e, err := parseListLine([]byte("12 3456 extra")); e != (ListEntry{12, 3456}) || err != nil {
		t.Errorf("parseListLine = %v %v", e, err)
	}
	for _, bad := range []string{"", "1", "0 10", "a 10", "1 -10", "1 1e3"} {
		if _, err := parseListLine([]byte(bad)); err == nil {
			t.Errorf("parseListLine(%q) succeeded", bad)
		}
	}
	if e, err := parseUIDLLine([]byte("7 AAQkADI=~!")); e != (UIDEntry{7, "AAQkADI=~!"}) || err != nil {
		t.Errorf("parseUIDLLine = %v %v", e, err)
	}
	if e, err := parseUIDLLine([]byte("7  spaced  ")); e.UID != "spaced" || err != nil {
		t.Errorf("parseUIDLLine with spaces around = %v %v", e, err)
	}
	for _, bad := range []string{"7", "7 ", "x uid", "7 two words", "7 caf\xc3\xa9", "7 " + strings.Repeat("u", MaxUIDLen+1)} {
		if _, err := parseUIDLLine([]byte(bad)); err == nil {
			t.Errorf("parseUIDLLine(%q) succeeded", bad)
		}
	}
	for text, want := range map[string]int64{"1234 octets": 1234, "12": 12, "": -1, "message follows": -1, "12 lines": -1} {
		if got := parseAnnounced(text); got != want {
			t.Errorf("parseAnnounced(%q) = %d, want %d", text, got, want)
		}
	}
}

func TestCapabilities(t *testing.T) {
	var c Capabilities
	c.Known = true
	for _, l := range []string{"TOP", "uidl", "SASL PLAIN xoauth2", "", "IMPLEMENTATION Dovecot"} {
		if err := c.parseCapaLine([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if !c.Has("UIDL") || !c.SupportsSASL("XOAUTH2") || c.SupportsSASL("LOGIN") || c.Has("STLS") {
		t.Errorf("capabilities %s", c)
	}
	if got := c.String(); got != "IMPLEMENTATION(Dovecot) SASL(PLAIN xoauth2) TOP UIDL" {
		t.Errorf("String = %q", got)
	}
	if err := c.parseCapaLine([]byte("BAD\x01NAME")); err == nil {
		t.Error("a control character in a capability name was accepted")
	}
}

// stuffBody dot-stuffs data as a server sends it, with the final dot.
func stuffBody(data []byte) []byte {
	var b bytes.Buffer
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n') + 1
		if i == 0 {
			i = len(data)
		}
		if data[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(data[:i])
		data = data[i:]
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func readBody(in []byte, limit, discard int64) ([]byte, bodyResult, *reader, error) {
	r := newReader(bytes.NewReader(in), DefaultMaxLine)
	var out bytes.Buffer
	res, err := r.body(&out, limit, discard)
	return out.Bytes(), res, r, err
}

func TestBody(t *testing.T) {
	msg := []byte("A: b\r\n\r\n.\r\n..\r\n.x\r\nbare\nlf\r\n" + strings.Repeat("long", 20000) + "\r\n")
	got, res, r, err := readBody(append(stuffBody(msg), "+OK next"...), 1<<20, 0)
	if err != nil || !bytes.Equal(got, msg) || res.Size != int64(len(msg)) || res.Over || res.Unstuffed != 0 {
		t.Fatalf("body = %q, %+v, %v", trunc(got), res, err)
	}
	if !r.pending() {
		t.Error("the next answer is not left unread")
	}

	// A bare LF after the final dot ends the body too; unstuffed dots are counted.
	got, res, _, err = readBody([]byte(".x\r\nok\r\n.\n"), 100, 0)
	if err != nil || string(got) != "x\r\nok\r\n" || res.Unstuffed != 1 {
		t.Errorf("LF terminator: %q, %+v, %v", got, res, err)
	}

	// Over the limit: the limit's bytes are kept, the rest discarded within bounds.
	big := stuffBody(bytes.Repeat([]byte("0123456789\r\n"), 100))
	got, res, _, err = readBody(big, 50, 10_000)
	if err != nil || len(got) != 50 || !res.Over || res.Size != 1200 {
		t.Errorf("over the limit: %d bytes, %+v, %v", len(got), res, err)
	}
	_, _, _, err = readBody(big, 50, 100)
	if !errors.Is(err, errDiscardExceeded) {
		t.Errorf("past the discard bound: %v", err)
	}

	// The connection ends mid-body, or mid-final-dot.
	for _, in := range []string{"abc\r\n", "abc", ".", ".\r", ""} {
		if _, _, _, err := readBody([]byte(in), 100, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: %v, want ErrUnexpectedEOF", in, err)
		}
	}
}

func TestLineAndList(t *testing.T) {
	r := newReader(strings.NewReader("short\r\n"+strings.Repeat("x", 200)+"\r\n"), 100)
	if l, err := r.line(); string(l) != "short" || err != nil {
		t.Fatalf("line = %q, %v", l, err)
	}
	var pe *ProtocolError
	if _, err := r.line(); !errors.As(err, &pe) {
		t.Errorf("long line: %v", err)
	}
	// A line longer than the whole buffer.
	r = newReader(strings.NewReader(strings.Repeat("x", 100_000)), 100)
	if _, err := r.line(); !errors.As(err, &pe) {
		t.Errorf("endless line: %v", err)
	}
	r = newReader(strings.NewReader("a\r\n..b\r\n\r\n.\r\n"), 100)
	var lines []string
	if err := r.list(10, func(b []byte) error { lines = append(lines, string(b)); return nil }); err != nil || strings.Join(lines, "|") != "a|.b|" {
		t.Errorf("list = %q, %v", lines, err)
	}
	r = newReader(strings.NewReader("a\r\nb\r\nc\r\n.\r\n"), 100)
	if err := r.list(2, func([]byte) error { return nil }); !errors.As(err, &pe) {
		t.Errorf("list over its bound: %v", err)
	}
	r = newReader(bufio.NewReader(strings.NewReader("a\r\n")), 100)
	if err := r.list(2, func([]byte) error { return nil }); !errors.Is(err, io.EOF) {
		t.Errorf("list cut short: %v", err)
	}
}
