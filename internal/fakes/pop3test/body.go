package pop3test

import (
	"bytes"
	"strings"
)

// multi sends a multi-line answer: the +OK line, the lines (dot-stuffed), the final dot.
func (ss *session) multi(first string, lines []string) bool {
	var b bytes.Buffer
	b.WriteString(first + "\r\n")
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l + "\r\n")
	}
	b.WriteString(".\r\n")
	return ss.write(b.Bytes())
}

// body sends a message body after its +OK line, dot-stuffed, or as a fault says.
func (ss *session) body(first string, data []byte) bool {
	var b bytes.Buffer
	b.WriteString(first + "\r\n")
	switch ss.bodyFault {
	case EndlessBody:
		ss.write(b.Bytes())
		line := []byte(strings.Repeat("y", 76) + "\r\n")
		chunk := bytes.Repeat(line, 400)
		for ss.write(chunk) {
		}
		return false
	case Unstuffed:
		b.Write(data)
		b.WriteString(".\r\n")
		return ss.write(b.Bytes())
	}
	stuffed := stuff(data)
	if ss.bodyFault == CutMidBody {
		b.Write(stuffed[:len(stuffed)/2])
		ss.write(b.Bytes())
		return false
	}
	b.Write(stuffed)
	b.WriteString(".\r\n")
	return ss.write(b.Bytes())
}

// stuff doubles the dot at the start of every line (RFC 1939 byte-stuffing).
func stuff(data []byte) []byte {
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
	return b.Bytes()
}
