// Package tneftest writes TNEF streams (MS-OXTNEF) for tests: the attributes and MAPI property
// lists Outlook writes, so the decoder can be tested on streams whose content is known.
package tneftest

import (
	"encoding/binary"
	"unicode/utf16"
)

// Attribute levels.
const (
	LevelMessage    = 1
	LevelAttachment = 2
)

// Attribute ids (with their type in the high word), as Outlook writes them.
const (
	AttSubject        = 0x00018004
	AttMessageClass   = 0x00078008
	AttBody           = 0x0002800C
	AttAttachData     = 0x0006800F
	AttAttachTitle    = 0x00018010
	AttAttachRendData = 0x00069002
	AttMAPIProps      = 0x00069003
	AttAttachment     = 0x00069005
	AttOemCodepage    = 0x00069007
)

// MAPI property types.
const (
	PtypInteger32 = 0x0003
	PtypString8   = 0x001E
	PtypUnicode   = 0x001F
	PtypBinary    = 0x0102
	PtypObject    = 0x000D
)

// Stream builds a TNEF stream.
type Stream struct{ b []byte }

// New starts a stream: the signature and a legacy key.
func New() *Stream {
	s := &Stream{}
	s.b = binary.LittleEndian.AppendUint32(s.b, 0x223E9F78)
	s.b = binary.LittleEndian.AppendUint16(s.b, 0x0102)
	return s
}

// Attr appends an attribute with its checksum.
func (s *Stream) Attr(level byte, id uint32, data []byte) *Stream {
	s.b = append(s.b, level)
	s.b = binary.LittleEndian.AppendUint32(s.b, id)
	s.b = binary.LittleEndian.AppendUint32(s.b, uint32(len(data)))
	s.b = append(s.b, data...)
	var sum uint16
	for _, c := range data {
		sum += uint16(c)
	}
	s.b = binary.LittleEndian.AppendUint16(s.b, sum)
	return s
}

// Bytes returns the stream.
func (s *Stream) Bytes() []byte { return s.b }

// Prop is one MAPI property for Props.
type Prop struct {
	Type, ID uint16
	// Named properties (ID >= 0x8000) get a GUID and this name.
	Name  string
	Value []byte
}

// Props encodes a MAPI property list (the value of AttMAPIProps and AttAttachment).
func Props(props ...Prop) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(props)))
	for _, p := range props {
		b = binary.LittleEndian.AppendUint16(b, p.Type)
		b = binary.LittleEndian.AppendUint16(b, p.ID)
		if p.ID >= 0x8000 {
			b = append(b, make([]byte, 16)...)
			b = binary.LittleEndian.AppendUint32(b, 1)
			name := UTF16(p.Name)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
			b = append(b, pad(name)...)
		}
		switch p.Type {
		case PtypString8, PtypUnicode, PtypBinary, PtypObject:
			b = binary.LittleEndian.AppendUint32(b, 1)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Value)))
			b = append(b, pad(p.Value)...)
		default:
			b = append(b, pad(p.Value)...)
		}
	}
	return b
}

func pad(b []byte) []byte {
	out := append([]byte(nil), b...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

// UTF16 encodes s as NUL-terminated UTF-16LE (PtypUnicode).
func UTF16(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, 0, 0)
}

// String8 encodes s as a NUL-terminated 8-bit string (attribute strings, PtypString8).
func String8(s string) []byte { return append([]byte(s), 0) }

// Uint32 encodes a PtypInteger32 value.
func Uint32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// StoredRTF wraps RTF as an uncompressed PR_RTF_COMPRESSED value ("MELA").
func StoredRTF(rtf string) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rtf)+12))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rtf)))
	b = binary.LittleEndian.AppendUint32(b, 0x414C454D)
	b = binary.LittleEndian.AppendUint32(b, 0)
	return append(b, rtf...)
}
