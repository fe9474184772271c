package parse

import (
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// fixUTF8 makes every string of a parsed message valid UTF-8, which protobuf requires: without it
// one undeclared 8-bit header or body would make the message impossible to send. Text that is not
// UTF-8 is read as Windows-1252 (what undeclared 8-bit mail almost always is) and a problem is
// recorded.
func fixUTF8(m protoreflect.Message) (fixed bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.StringKind:
					if s := l.Get(i).String(); !utf8.ValidString(s) {
						l.Set(i, protoreflect.ValueOfString(eightBit(s)))
						fixed = true
					}
				case protoreflect.MessageKind:
					fixed = fixUTF8(l.Get(i).Message()) || fixed
				}
			}
		case fd.IsMap():
			mp := v.Map()
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.StringKind && !utf8.ValidString(mv.String()) {
					mp.Set(k, protoreflect.ValueOfString(eightBit(mv.String())))
					fixed = true
				}
				return true
			})
		case fd.Kind() == protoreflect.StringKind:
			if s := v.String(); !utf8.ValidString(s) {
				m.Set(fd, protoreflect.ValueOfString(eightBit(s)))
				fixed = true
			}
		case fd.Kind() == protoreflect.MessageKind:
			fixed = fixUTF8(v.Message()) || fixed
		}
		return true
	})
	return fixed
}
