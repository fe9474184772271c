package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"strings"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Old clients and gateways (and scripts to this day) put files into a text body uuencoded, between
// a "begin 644 name" line and an "end" line, or base64 between "begin-base64 644 name" and
// "====". Such a file is an attachment: it is taken out of the text and delivered with the id of
// its part and its position in it ("1:1"), which OpenPart serves like a winmail.dat's files.

// uuFile is a file found in a text body.
type uuFile struct {
	name       string
	data       []byte
	start, end int    // the block's bytes in the text, from its begin line to after its end line
	problem    string // what was wrong with it, or ""
}

// findUU finds the uuencoded (and begin-base64) files in a text body. It is cheap on text
// without any: one search for "begin".
func findUU(text []byte) []uuFile {
	if !bytes.Contains(text, []byte("begin")) {
		return nil
	}
	var out []uuFile
	for i := 0; i < len(text); {
		lineEnd, next := lineAt(text, i)
		line := text[i:lineEnd]
		if f, ok := uuBegin(line); ok {
			if file, end, ok := decodeUUBlock(text, next, f); ok {
				file.start, file.end = i, end
				out = append(out, file)
				i = end
				continue
			}
		}
		// Skip to the next line that may begin a block.
		j := bytes.Index(text[i:], []byte("\nbegin"))
		if j < 0 {
			break
		}
		i += j + 1
	}
	return out
}

// lineAt returns the end of the line at i (before its CR LF or LF) and the start of the next.
func lineAt(text []byte, i int) (end, next int) {
	j := bytes.IndexByte(text[i:], '\n')
	if j < 0 {
		end, next = len(text), len(text)
	} else {
		end, next = i+j, i+j+1
	}
	if end > i && text[end-1] == '\r' {
		end--
	}
	return end, next
}

// uuHeader is a begin line: the file's name and whether it is the base64 variant.
type uuHeader struct {
	name   string
	base64 bool
}

// uuBegin reads a "begin MODE NAME" or "begin-base64 MODE NAME" line (MODE: 3 or 4 octal digits).
func uuBegin(line []byte) (uuHeader, bool) {
	var h uuHeader
	rest, ok := bytes.CutPrefix(line, []byte("begin-base64 "))
	if ok {
		h.base64 = true
	} else if rest, ok = bytes.CutPrefix(line, []byte("begin ")); !ok {
		return h, false
	}
	mode, name, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(mode) < 3 || len(mode) > 4 {
		return h, false
	}
	for _, c := range mode {
		if c < '0' || c > '7' {
			return h, false
		}
	}
	h.name = strings.TrimSpace(string(name))
	return h, h.name != ""
}

// decodeUUBlock decodes the lines from i up to the end line. It fails, and the begin line is
// taken for text, when the first line is not data of the block's encoding. A block without an
// end line ends before the first line that is not data (which stays text), with a problem.
func decodeUUBlock(text []byte, i int, h uuHeader) (uuFile, int, bool) {
	f := uuFile{name: h.name}
	var b64 []byte
	for n := 0; ; n++ {
		lineEnd, next := len(text), len(text)
		if i < len(text) {
			lineEnd, next = lineAt(text, i)
		}
		line := text[i:lineEnd]
		var ok bool
		if h.base64 {
			if string(bytes.TrimSpace(line)) == "====" {
				i = next
				break
			}
			if ok = i < len(text) && validBase64Line(line); ok {
				b64 = append(b64, bytes.TrimSpace(line)...)
			}
		} else {
			if string(bytes.TrimRight(line, " \t")) == "end" {
				i = next
				break
			}
			var data []byte
			data, ok = uuLine(line)
			ok = ok && i < len(text) && (n > 0 || len(data) > 0) // the first line must hold data
			f.data = append(f.data, data...)
		}
		if !ok {
			if n == 0 {
				return f, 0, false
			}
			f.problem = "no end line: the file may be cut short"
			break
		}
		i = next
	}
	if h.base64 {
		r := newBase64Reader(bytes.NewReader(b64))
		buf := make([]byte, base64.StdEncoding.DecodedLen(len(b64))+3)
		n := 0
		for {
			m, err := r.Read(buf[n:])
			n += m
			if err != nil || n == len(buf) {
				break
			}
		}
		f.data = buf[:n]
		if pr := r.problem(); pr != "" && f.problem == "" {
			f.problem = "base64: " + pr
		}
	}
	return f, i, true
}

func validBase64Line(line []byte) bool {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return false
	}
	for _, c := range line {
		if base64Value[c] != c || c == 1 {
			return false
		}
	}
	return true
}

// uuLine decodes one uuencoded line: a length character (32 + n, or "`" for 0), then groups of
// 4 characters of 6 bits each (32 + v, "`" for 0). Trailing spaces that mailers strip are taken
// as zeros. It fails on a line that is not uuencoded.
func uuLine(line []byte) ([]byte, bool) {
	if len(line) == 0 {
		return nil, true // a blank line: no data (some encoders end with one)
	}
	if line[0] < ' ' || line[0] > '`' {
		return nil, false
	}
	n := int((line[0] - ' ') & 0x3f)
	if n == 0 {
		return nil, true
	}
	chars := line[1:]
	// Whole groups of 4 are written; mailers strip trailing spaces (old encoders write a space,
	// not "`", for 0), so up to 2 may be missing; a checksum character may follow.
	need := (n + 2) / 3 * 4
	if len(chars) < need-2 || len(chars) > need+2 {
		return nil, false
	}
	out := make([]byte, 0, n)
	for g := 0; len(out) < n; g += 4 {
		var v [4]byte
		for k := range 4 {
			c := byte(' ')
			if g+k < len(chars) {
				c = chars[g+k]
			}
			if c < ' ' || c > '`' {
				return nil, false
			}
			v[k] = (c - ' ') & 0x3f
		}
		out = append(out, v[0]<<2|v[1]>>4, v[1]<<4|v[2]>>2, v[2]<<6|v[3])
	}
	return out[:n], true
}

// unpackUU takes the uuencoded files out of a text body part, as attachments of msg, and
// returns the text without them.
func (p *parser) unpackUU(msg *mailintakev1.Message, partID, where string, body []byte) string {
	files := findUU(body)
	if files == nil {
		return string(body)
	}
	var text strings.Builder
	last := 0
	for i, f := range files {
		text.Write(body[last:f.start])
		last = f.end
		p.parts++
		if f.problem != "" {
			msg.Problems = append(msg.Problems, problem(where, "encoding", "uuencoded "+f.name+": "+f.problem))
		}
		msg.Attachments = append(msg.Attachments, p.uuAttachment(f, tnefID(partID, i+1)))
	}
	text.Write(body[last:])
	return text.String()
}

func (p *parser) uuAttachment(f uuFile, id string) *mailintakev1.Attachment {
	a := &mailintakev1.Attachment{
		Id: id, Filename: f.name, ContentType: typeByExtension(f.name), Size: uint64(len(f.data)),
		Disposition: mailintakev1.Disposition_DISPOSITION_ATTACHMENT,
	}
	if int64(len(f.data)) > p.opts.MaxInlineAttachment {
		a.DataOmitted = true
	} else {
		sum := sha256.Sum256(f.data)
		a.Sha256 = hex.EncodeToString(sum[:])
		a.Data = f.data
	}
	return a
}

// openUUPart returns the n-th uuencoded file of a text part's decoded body.
func openUUPart(body []byte, id string, n int) (*mailintakev1.Attachment, io.Reader, error) {
	files := findUU(body)
	if n < 1 || n > len(files) {
		return nil, nil, ErrNoSuchPart
	}
	p := &parser{}
	p.opts.defaults()
	a := p.uuAttachment(files[n-1], id)
	a.Data, a.Sha256, a.DataOmitted = nil, "", false
	return a, bytes.NewReader(files[n-1].data), nil
}
