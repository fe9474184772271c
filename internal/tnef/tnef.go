// Package tnef reads Microsoft's Transport Neutral Encapsulation Format (MS-OXTNEF), the
// winmail.dat attachment Outlook and Exchange send when they keep rich-text formatting: the
// message's real attachments and its body are inside it.
//
// It is written here because no Go TNEF reader that could be taken as a dependency reads what a
// service desk needs: the MAPI long file names and MIME types of attachments, the HTML or
// compressed-RTF body, and embedded messages, without panicking on damaged files. The decoder
// works on a byte slice already in memory (the attachment), returns subslices of it instead of
// copies, and never reads outside it.
package tnef

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/ianaindex"
)

// Signature is the first four bytes of every TNEF stream (0x223E9F78, little-endian).
const Signature = 0x223E9F78

// ErrNotTNEF is returned for data that does not start with the TNEF signature.
var ErrNotTNEF = errors.New("tnef: not a TNEF stream")

// maxDepth bounds embedded messages inside embedded messages.
const maxDepth = 8

// Message is what a TNEF stream carries.
type Message struct {
	// Subject and MessageClass (e.g. "IPM.Note", "IPM.Microsoft Schedule.MtgReq").
	Subject, MessageClass string
	// Text is the plain-text body, HTML the HTML body and RTF the decompressed RTF body; any may be
	// empty. Use Body for the best readable form.
	Text string
	HTML []byte
	RTF  []byte
	// HTMLCharset is the charset of HTML when known (from PR_INTERNET_CPID).
	HTMLCharset string
	// Attachments in stream order.
	Attachments []*Attachment
	// Problems lists what could not be read; the rest of the stream still was.
	Problems []string
}

// Attachment is one file inside a TNEF stream.
type Attachment struct {
	// Filename is the long file name when the sender gave one, else the 8.3 title.
	Filename string
	// ContentType is the MIME type the sender recorded (PR_ATTACH_MIME_TAG), lower case, or "".
	ContentType string
	// ContentID is the Content-ID of an inline image (PR_ATTACH_CONTENT_ID).
	ContentID string
	// Data is the file's bytes.
	Data []byte
	// Message is set for an attached Outlook item (an embedded message), decoded.
	Message *Message
}

// TNEF attribute identifiers (the low 16 bits of the attribute id; the high bits give its type).
const (
	attSubject        = 0x8004
	attMessageClass   = 0x8008
	attBody           = 0x800C
	attAttachData     = 0x800F
	attAttachTitle    = 0x8010
	attAttachRendData = 0x9002
	attMAPIProps      = 0x9003
	attAttachment     = 0x9005
	attOemCodepage    = 0x9007
)

// Decode reads a TNEF stream. A damaged stream yields what could be read before the damage, with
// a problem; only data without the signature is an error.
func Decode(data []byte) (*Message, error) {
	return decode(data, 0)
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("tnef: truncated at offset %d (need %d bytes, %d left)", r.off, n, len(r.b)-r.off)
		return false
	}
	return true
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) skip(n int) { r.bytes(n) }

func decode(data []byte, depth int) (*Message, error) {
	if len(data) < 6 || binary.LittleEndian.Uint32(data) != Signature {
		return nil, ErrNotTNEF
	}
	r := &reader{b: data, off: 6} // signature and legacy key
	m := &Message{}
	codepage := 1252
	var cur *Attachment
	for r.off < len(r.b) && r.err == nil {
		if left := len(r.b) - r.off; left < 11 { // level, id, length and checksum
			m.Problems = append(m.Problems, fmt.Sprintf("%d bytes after the last attribute were ignored", left))
			break
		}
		level := r.b[r.off]
		r.off++
		id := r.u32()
		size := r.u32()
		if r.err != nil {
			break
		}
		if int(size) > len(r.b)-r.off || level == 0 || level > 2 {
			// Trailing garbage after the last attribute is common; a damaged length is not
			// recoverable, so stop with what was read.
			if level != 0 && level <= 2 {
				m.Problems = append(m.Problems, fmt.Sprintf("attribute 0x%08x claims %d bytes but %d remain; the rest is not read", id, size, len(r.b)-r.off))
			}
			break
		}
		val := r.bytes(int(size))
		r.skip(2) // checksum: damaged checksums are common and the value is used anyway
		switch id & 0xFFFF {
		case attOemCodepage:
			if len(val) >= 4 {
				codepage = int(binary.LittleEndian.Uint32(val))
			}
		case attSubject:
			m.Subject = ansi(val, codepage)
		case attMessageClass:
			m.MessageClass = ansi(val, codepage)
		case attBody:
			m.Text = ansi(val, codepage)
		case attAttachRendData:
			cur = &Attachment{}
			m.Attachments = append(m.Attachments, cur)
		case attAttachTitle:
			if cur != nil && cur.Filename == "" {
				cur.Filename = ansi(val, codepage)
			}
		case attAttachData:
			if cur != nil {
				cur.Data = val
			}
		case attMAPIProps:
			props, err := readProps(val)
			if err != nil {
				m.Problems = append(m.Problems, "message properties: "+err.Error())
			}
			m.apply(props, codepage)
		case attAttachment:
			props, err := readProps(val)
			if err != nil {
				m.Problems = append(m.Problems, "attachment properties: "+err.Error())
			}
			if cur != nil {
				m.applyAttachment(cur, props, codepage, depth)
			}
		}
	}
	if r.err != nil {
		m.Problems = append(m.Problems, r.err.Error())
	}
	return m, nil
}

// MAPI property tags used here (MS-OXPROPS).
const (
	prSubject          = 0x0037
	prMessageClass     = 0x001A
	prBody             = 0x1000
	prRTFCompressed    = 0x1009
	prBodyHTML         = 0x1013
	prInternetCPID     = 0x3FDE
	prDisplayName      = 0x3001
	prAttachDataObj    = 0x3701
	prAttachFilename   = 0x3704
	prAttachLongName   = 0x3707
	prAttachMimeTag    = 0x370E
	prAttachContentID  = 0x3712
	prAttachMethod     = 0x3705
	attachEmbeddedMsg  = 5
	ptypString8        = 0x001E
	ptypUnicode        = 0x001F
	ptypBinary         = 0x0102
	ptypObject         = 0x000D
	ptypLong           = 0x0003
	multiValueFlag     = 0x1000
	namedPropertyFirst = 0x8000
)

// prop is one MAPI property value (the first, for multi-valued ones).
type prop struct {
	typ, id uint16
	named   bool
	val     []byte
}

// readProps reads a MAPI property list (MS-OXTNEF section 2.1.3.4).
func readProps(b []byte) ([]prop, error) {
	r := &reader{b: b}
	count := r.u32()
	var out []prop
	for i := uint32(0); i < count && r.err == nil; i++ {
		typ, id := r.u16(), r.u16()
		p := prop{typ: typ, id: id, named: id >= namedPropertyFirst}
		if p.named {
			r.skip(16) // property set GUID
			if kind := r.u32(); kind == 0 {
				r.skip(4)
			} else {
				n := r.u32()
				r.skip(pad4(int(n)))
			}
		}
		base := typ &^ multiValueFlag
		values := uint32(1)
		if typ&multiValueFlag != 0 || base == ptypString8 || base == ptypUnicode || base == ptypBinary || base == ptypObject {
			values = r.u32()
		}
		if values > uint32(len(b)) {
			return out, fmt.Errorf("property 0x%04x claims %d values", id, values)
		}
		for v := uint32(0); v < values && r.err == nil; v++ {
			var val []byte
			switch base {
			case ptypString8, ptypUnicode, ptypBinary, ptypObject:
				n := r.u32()
				if int64(n) > int64(len(b)) {
					return out, fmt.Errorf("property 0x%04x claims %d bytes", id, n)
				}
				val = r.bytes(int(n))
				r.skip(pad4(int(n)) - int(n))
			default:
				size, ok := fixedSize(base)
				if !ok {
					return out, fmt.Errorf("property 0x%04x has unknown type 0x%04x", id, typ)
				}
				val = r.bytes(size)
				r.skip(pad4(size) - size)
			}
			if v == 0 {
				p.val = val
			}
		}
		if r.err == nil {
			out = append(out, p)
		}
	}
	return out, r.err
}

func pad4(n int) int { return (n + 3) &^ 3 }

// fixedSize is the size of a fixed-length MAPI type (MS-OXCDATA section 2.11.1).
func fixedSize(t uint16) (int, bool) {
	switch t {
	case 0x0001: // PtypNull
		return 0, true
	case 0x0002, 0x000B: // PtypInteger16, PtypBoolean
		return 2, true
	case 0x0003, 0x0004, 0x000A: // PtypInteger32, PtypFloating32, PtypErrorCode
		return 4, true
	case 0x0005, 0x0006, 0x0007, 0x0014, 0x0040: // floating64, currency, floating time, integer64, time
		return 8, true
	case 0x0048: // PtypGuid
		return 16, true
	}
	return 0, false
}

func (m *Message) apply(props []prop, codepage int) {
	for _, p := range props {
		if p.named {
			continue
		}
		switch p.id {
		case prSubject:
			if m.Subject == "" {
				m.Subject = propString(p, codepage)
			}
		case prMessageClass:
			if m.MessageClass == "" {
				m.MessageClass = propString(p, codepage)
			}
		case prBody:
			if s := propString(p, codepage); s != "" {
				m.Text = s
			}
		case prBodyHTML:
			if p.typ == ptypUnicode {
				m.HTML = []byte(propString(p, codepage))
				m.HTMLCharset = "utf-8"
			} else {
				m.HTML = trimNUL(p.val)
			}
		case prInternetCPID:
			if len(p.val) >= 4 && m.HTMLCharset == "" {
				m.HTMLCharset = codepageName(int(binary.LittleEndian.Uint32(p.val)))
			}
		case prRTFCompressed:
			rtf, err := DecompressRTF(p.val)
			if err != nil {
				m.Problems = append(m.Problems, "RTF body: "+err.Error())
				continue
			}
			m.RTF = rtf
		}
	}
}

func (m *Message) applyAttachment(a *Attachment, props []prop, codepage, depth int) {
	method := uint32(0)
	var obj []byte
	for _, p := range props {
		if p.named {
			continue
		}
		switch p.id {
		case prAttachLongName:
			if s := propString(p, codepage); s != "" {
				a.Filename = s
			}
		case prAttachFilename, prDisplayName:
			if s := propString(p, codepage); s != "" && a.Filename == "" {
				a.Filename = s
			}
		case prAttachMimeTag:
			a.ContentType = strings.ToLower(strings.TrimSpace(propString(p, codepage)))
		case prAttachContentID:
			a.ContentID = strings.Trim(propString(p, codepage), "<> ")
		case prAttachMethod:
			if len(p.val) >= 4 {
				method = binary.LittleEndian.Uint32(p.val)
			}
		case prAttachDataObj:
			obj = p.val
			if p.typ == ptypObject && len(obj) >= 16 {
				obj = obj[16:] // the interface identifier of the object
			}
		}
	}
	if obj == nil {
		return
	}
	if method == attachEmbeddedMsg || (len(obj) >= 4 && binary.LittleEndian.Uint32(obj) == Signature) {
		if depth >= maxDepth {
			m.Problems = append(m.Problems, "embedded messages nested too deep; not read")
			return
		}
		if em, err := decode(obj, depth+1); err == nil {
			a.Message = em
			if a.Filename == "" {
				a.Filename = em.Subject
			}
		}
	}
	if a.Data == nil {
		a.Data = obj
	}
}

func propString(p prop, codepage int) string {
	switch p.typ &^ multiValueFlag {
	case ptypUnicode:
		return utf16le(p.val)
	case ptypString8, ptypBinary:
		return ansi(p.val, codepage)
	}
	return ""
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func utf16le(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u = append(u, binary.LittleEndian.Uint16(b[i:]))
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	return string(utf16.Decode(u))
}

// ansi decodes a NUL-terminated 8-bit string in a Windows code page.
func ansi(b []byte, codepage int) string {
	b = trimNUL(b)
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	if enc, err := ianaindex.IANA.Encoding(codepageName(codepage)); err == nil && enc != nil {
		if s, err := enc.NewDecoder().Bytes(b); err == nil {
			return string(s)
		}
	}
	s, _ := charmap.Windows1252.NewDecoder().Bytes(b)
	return string(s)
}

// codepageName maps a Windows code page number to its IANA charset name.
func codepageName(cp int) string {
	switch cp {
	case 65001:
		return "utf-8"
	case 20127:
		return "us-ascii"
	case 28591, 28592, 28593, 28594, 28595, 28596, 28597, 28598, 28599:
		return fmt.Sprintf("iso-8859-%d", cp-28590)
	case 28605:
		return "iso-8859-15"
	case 932:
		return "shift_jis"
	case 936:
		return "gbk"
	case 949:
		return "euc-kr"
	case 950:
		return "big5"
	case 50220, 50221, 50222:
		return "iso-2022-jp"
	case 51932:
		return "euc-jp"
	case 20866:
		return "koi8-r"
	case 21866:
		return "koi8-u"
	case 54936:
		return "gb18030"
	case 874:
		return "windows-874"
	case 437:
		return "ibm437"
	case 850:
		return "ibm850"
	case 866:
		return "ibm866"
	}
	if cp >= 1250 && cp <= 1258 {
		return fmt.Sprintf("windows-%d", cp)
	}
	return "windows-1252"
}
