package pop3

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzResponseLine feeds every line parser any line: none may panic, and what they accept
// stays within its bounds.
func FuzzResponseLine(f *testing.F) {
	for _, s := range []string{"+OK", "-ERR [IN-USE] locked", "-ERR [SYS/TEMP/x] y", "+ dGVzdA==", "+",
		"3 1234", "1 uid-1", "SASL PLAIN XOAUTH2", "+OK 1234 octets", "-ERR [", "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if st, err := parseStatus(line); err == nil {
			if len(st.code) > maxCodeLen || len(st.text) > 3*len(line) {
				t.Fatalf("status %+v from %q", st, line)
			}
		}
		parseContinuation(line)
		if n, size, err := parseStat(string(line)); err == nil && (n < 0 || size < 0) {
			t.Fatalf("stat %d %d", n, size)
		}
		parseAnnounced(string(line))
		if e, err := parseListLine(line); err == nil && (e.Msg < 1 || e.Size < 0) {
			t.Fatalf("list entry %+v", e)
		}
		if e, err := parseUIDLLine(line); err == nil && (e.Msg < 1 || len(e.UID) == 0 || len(e.UID) > MaxUIDLen) {
			t.Fatalf("uidl entry %+v", e)
		}
		var c Capabilities
		c.parseCapaLine(line)
		_ = c.String()
	})
}

// FuzzList reads any input as a multi-line answer: bounded lines and counts, no panic.
func FuzzList(f *testing.F) {
	f.Add([]byte("1 10\r\n2 20\r\n.\r\n"), 5)
	f.Add([]byte("..x\r\n.\r\n"), 1)
	f.Add([]byte("no end"), 3)
	f.Fuzz(func(t *testing.T, in []byte, maxLines int) {
		maxLines = max(0, maxLines%50)
		r := newReader(bytes.NewReader(in), 64)
		n := 0
		err := r.list(maxLines, func(b []byte) error {
			n++
			if len(b) > 64 {
				t.Fatalf("line of %d bytes", len(b))
			}
			parseUIDLLine(b)
			parseListLine(b)
			return nil
		})
		if n > maxLines {
			t.Fatalf("%d lines, bound %d (err %v)", n, maxLines, err)
		}
	})
}

// FuzzBody reads any input as a message body: never more than the limit is written, never
// more than limit+discard read without an error, and no panic.
func FuzzBody(f *testing.F) {
	f.Add([]byte("a\r\n..b\r\n.\r\n"), int64(100), int64(0))
	f.Add([]byte(".x\n.\n"), int64(1), int64(1))
	f.Add([]byte(".\r"), int64(10), int64(10))
	f.Fuzz(func(t *testing.T, in []byte, limit, discard int64) {
		limit, discard = max(0, limit%4096), max(0, discard%4096)
		r := newReader(bytes.NewReader(in), DefaultMaxLine)
		var out bytes.Buffer
		res, err := r.body(&out, limit, discard)
		if int64(out.Len()) > limit || res.Written != int64(out.Len()) {
			t.Fatalf("wrote %d (counted %d), limit %d", out.Len(), res.Written, limit)
		}
		if err == nil && res.Over != (res.Size > limit) {
			t.Fatalf("over %v with size %d, limit %d", res.Over, res.Size, limit)
		}
		if err == nil && res.Size-limit > discard {
			t.Fatalf("read %d bytes past the limit, discard bound %d", res.Size-limit, discard)
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errDiscardExceeded) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzDotRoundTrip dot-stuffs any message as a server does and reads it back: the bytes come
// back exactly, with nothing left over.
func FuzzDotRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.\r\n..\r\n.a\r\n"))
	f.Add([]byte(".\n.\r\n\r\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > 0 && msg[len(msg)-1] != '\n' {
			msg = append(msg, '\r', '\n') // a stored message ends with a line break
		}
		r := newReader(bytes.NewReader(stuffBody(msg)), DefaultMaxLine)
		var out bytes.Buffer
		res, err := r.body(&out, int64(len(msg)), 0)
		if err != nil || !bytes.Equal(out.Bytes(), msg) || res.Unstuffed != 0 || res.Over || r.pending() {
			t.Fatalf("round trip of %q = %q, %+v, %v", msg, out.Bytes(), res, err)
		}
	})
}
