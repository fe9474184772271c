package tnef

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"

	"golang.org/x/text/encoding/ianaindex"
)

// rtfPrebuf is the dictionary's initial content (MS-OXRTFCP section 3.1.1.1.1).
const rtfPrebuf = "{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"

const (
	rtfCompressed   = 0x75465A4C // "LZFu"
	rtfUncompressed = 0x414C454D // "MELA"
	// maxRTF bounds the decompressed size, whatever the header claims.
	maxRTF = 64 << 20
)

// DecompressRTF decompresses a PR_RTF_COMPRESSED value (MS-OXRTFCP).
func DecompressRTF(b []byte) ([]byte, error) {
	if len(b) < 16 {
		return nil, errors.New("compressed RTF shorter than its header")
	}
	rawSize := int(binary.LittleEndian.Uint32(b[4:]))
	kind := binary.LittleEndian.Uint32(b[8:])
	in := b[16:]
	if rawSize > maxRTF {
		rawSize = maxRTF
	}
	switch kind {
	case rtfUncompressed:
		if rawSize > len(in) {
			rawSize = len(in)
		}
		return in[:rawSize], nil
	case rtfCompressed:
	default:
		return nil, fmt.Errorf("unknown compressed RTF type 0x%08x", kind)
	}
	var dict [4096]byte
	copy(dict[:], rtfPrebuf)
	w := len(rtfPrebuf)
	out := make([]byte, 0, min(rawSize, 16*len(in)+64))
	for i := 0; i < len(in) && len(out) < rawSize; {
		control := in[i]
		i++
		for bit := 0; bit < 8 && i < len(in) && len(out) < rawSize; bit++ {
			if control&(1<<bit) == 0 {
				c := in[i]
				i++
				out = append(out, c)
				dict[w] = c
				w = (w + 1) & 4095
				continue
			}
			if i+1 >= len(in) {
				return out, errors.New("compressed RTF ends inside a reference")
			}
			ref := int(in[i])<<8 | int(in[i+1])
			i += 2
			offset, length := ref>>4, ref&0xF+2
			if offset == w {
				return out, nil // the end marker
			}
			for k := 0; k < length; k++ {
				c := dict[(offset+k)&4095]
				out = append(out, c)
				dict[w] = c
				w = (w + 1) & 4095
			}
		}
	}
	return out, nil
}

// RTFBody returns the readable body of an RTF document: for RTF that encapsulates HTML (Outlook's
// "\fromhtml1", MS-OXRTFEX) the original HTML; otherwise the document's text.
func RTFBody(rtf []byte) (html string, text string) {
	head := rtf[:min(len(rtf), 1024)]
	if bytes.Contains(head, []byte(`\fromhtml`)) {
		return rtfWalk(rtf, true), ""
	}
	return "", rtfWalk(rtf, false)
}

// destinations whose content is not text.
var skipDestinations = map[string]bool{
	"fonttbl": true, "colortbl": true, "stylesheet": true, "info": true, "pict": true, "object": true,
	"header": true, "footer": true, "headerl": true, "headerr": true, "footerl": true, "footerr": true,
	"listtable": true, "listoverridetable": true, "rsidtbl": true, "generator": true, "xmlnstbl": true,
	"themedata": true, "colorschememapping": true, "latentstyles": true, "datastore": true, "filetbl": true,
	"revtbl": true, "pgdsctbl": true, "mmathPr": true, "field": false, "fldinst": true,
}

type rtfGroup struct {
	skip    bool // content is not output
	htmlrtf bool // inside \htmlrtf ... \htmlrtf0: RTF-only content of encapsulated HTML
	uc      int  // characters to skip after \uN
}

// rtfWalk renders RTF: as text, or, when html is set, as the HTML encapsulated in it.
func rtfWalk(rtf []byte, html bool) string {
	var out []byte
	codepage := "windows-1252"
	stack := []rtfGroup{{uc: 1}}
	skipChars := 0
	var pending []byte // \'hh bytes waiting to be decoded together (multi-byte code pages)
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if enc, err := ianaindex.IANA.Encoding(codepage); err == nil && enc != nil {
			if s, err := enc.NewDecoder().Bytes(pending); err == nil {
				out = append(out, s...)
				pending = pending[:0]
				return
			}
		}
		out = append(out, pending...)
		pending = pending[:0]
	}
	emit := func(s string) {
		g := stack[len(stack)-1]
		if g.skip || g.htmlrtf {
			return
		}
		flush()
		out = append(out, s...)
	}
	for i := 0; i < len(rtf); i++ {
		c := rtf[i]
		g := &stack[len(stack)-1]
		switch c {
		case '{':
			flush()
			if len(stack) < 512 {
				stack = append(stack, *g)
			}
			// "{\*\dest" is an optional destination: skipped unless it is an HTML tag.
			if i+3 < len(rtf) && rtf[i+1] == '\\' && rtf[i+2] == '*' && rtf[i+3] == '\\' {
				word, _, _ := controlWord(rtf, i+4)
				top := &stack[len(stack)-1]
				if !(html && strings.HasPrefix(word, "htmltag")) {
					top.skip = true
				} else {
					top.htmlrtf = false
				}
			}
		case '}':
			flush()
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case '\\':
			if i+1 >= len(rtf) {
				continue
			}
			n := rtf[i+1]
			switch {
			case n == '\\' || n == '{' || n == '}':
				emit(string(n))
				i++
			case n == '\'':
				if i+3 < len(rtf) {
					if v, err := strconv.ParseUint(string(rtf[i+2:i+4]), 16, 8); err == nil && !g.skip && !g.htmlrtf {
						if skipChars > 0 {
							skipChars--
						} else {
							pending = append(pending, byte(v))
						}
					}
				}
				i += 3
			case n == '~':
				emit("\u00a0")
				i++
			case n == '\r' || n == '\n':
				emit("\n")
				i++
			case isAlpha(n):
				word, param, end := controlWord(rtf, i+1)
				i = end - 1
				switch word {
				case "ansicpg":
					codepage = codepageName(param)
				case "htmlrtf":
					g.htmlrtf = param != 0
				case "uc":
					g.uc = param
				case "u":
					if param < 0 {
						param += 65536
					}
					r := rune(param)
					if utf16.IsSurrogate(r) && i+2 < len(rtf) {
						// a surrogate pair is two \u words
						if w2, p2, e2 := controlWord(rtf, skipAfterU(rtf, i+1, g.uc)+1); w2 == "u" {
							if p2 < 0 {
								p2 += 65536
							}
							r = utf16.DecodeRune(r, rune(p2))
							i = e2 - 1
						}
					}
					emit(string(r))
					skipChars = g.uc
				case "par", "line":
					if html {
						emit("\r\n")
					} else {
						emit("\n")
					}
				case "tab":
					emit("\t")
				case "emdash":
					emit("—")
				case "endash":
					emit("–")
				case "bullet":
					emit("•")
				case "lquote":
					emit("‘")
				case "rquote":
					emit("’")
				case "ldblquote":
					emit("“")
				case "rdblquote":
					emit("”")
				default:
					if skipDestinations[word] {
						g.skip = true
					}
				}
			default:
				i++
			}
		case '\r', '\n', 0:
			// line breaks in RTF source are not text; NULs pad the decompressed stream
		default:
			if skipChars > 0 {
				skipChars--
				continue
			}
			if !g.skip && !g.htmlrtf {
				if c < 0x80 {
					flush()
					out = append(out, c)
				} else {
					pending = append(pending, c)
				}
			}
		}
	}
	flush()
	return string(out)
}

// skipAfterU returns the offset after the uc fallback characters that follow a \u word ending at i.
func skipAfterU(rtf []byte, i, uc int) int {
	for k := 0; k < uc && i < len(rtf); k++ {
		if rtf[i] == '\\' && i+3 < len(rtf) && rtf[i+1] == '\'' {
			i += 4
		} else {
			i++
		}
	}
	return i
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// controlWord reads a control word starting at rtf[i] (after the backslash): its name, numeric
// parameter and the offset after it (past one delimiting space).
func controlWord(rtf []byte, i int) (string, int, int) {
	start := i
	for i < len(rtf) && isAlpha(rtf[i]) {
		i++
	}
	word := string(rtf[start:i])
	neg := false
	if i < len(rtf) && rtf[i] == '-' {
		neg = true
		i++
	}
	param, digits := 0, 0
	for i < len(rtf) && rtf[i] >= '0' && rtf[i] <= '9' && digits < 10 {
		param = param*10 + int(rtf[i]-'0')
		i++
		digits++
	}
	if neg {
		param = -param
	}
	if digits == 0 {
		param = 1 // a word without a parameter is "on"
	}
	if i < len(rtf) && rtf[i] == ' ' {
		i++
	}
	return word, param, i
}
