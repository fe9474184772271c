package parse

import (
	"bytes"
	"fmt"
)

// repairHeader makes a header section that textproto would refuse readable, so that one bad
// line does not cost the whole message (go-message, like net/textproto, stops at the first
// malformed line). Real mail brings: an mbox "From " envelope line before the header, lines
// without a colon, keys with spaces, and continuation lines before any field. Such lines are
// dropped and reported; everything else, and the body, stays byte for byte.
func repairHeader(raw []byte) ([]byte, []string) {
	end := headerEnd(raw)
	head := raw[:end]
	var out bytes.Buffer
	var problems []string
	out.Grow(end) // the body is added only when something was dropped
	first, haveField := true, false
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		var line []byte
		if i < 0 {
			line, head = head, nil
		} else {
			line, head = head[:i+1], head[i+1:]
		}
		content := bytes.TrimRight(line, "\r\n")
		switch {
		case len(content) == 0:
			out.Write(line)
		case content[0] == ' ' || content[0] == '\t':
			if haveField {
				out.Write(line)
			} else {
				problems = append(problems, fmt.Sprintf("header: a continuation line before any field was dropped: %.60q", content))
			}
		case validField(content):
			out.Write(line)
			haveField = true
		case first && bytes.HasPrefix(content, []byte("From ")):
			problems = append(problems, "header: an mbox 'From ' line before the header was dropped")
		default:
			problems = append(problems, fmt.Sprintf("header: a malformed line was dropped: %.60q", content))
		}
		first = false
	}
	if len(problems) == 0 {
		return raw, nil
	}
	out.Write(raw[end:])
	return out.Bytes(), problems
}

// headerEnd returns the offset where the header section ends (at its blank line, which stays
// with the body), or len(raw).
func headerEnd(raw []byte) int {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return len(raw)
		}
		line := bytes.TrimRight(raw[i:i+j], "\r")
		if len(line) == 0 {
			return i
		}
		i += j + 1
	}
	return len(raw)
}

// validField reports whether a line starts with a field name (printable ASCII but colon and space,
// RFC 5322 section 2.2) and a colon.
func validField(line []byte) bool {
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:c], " \t") // "Subject : x" is obsolete syntax but readable
	if len(name) == 0 {
		return false
	}
	for _, b := range name {
		if b <= ' ' || b > '~' {
			return false
		}
	}
	return true
}
