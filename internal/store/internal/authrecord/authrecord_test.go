package authrecord

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		state  []byte
		handle string
	}{
		{nil, ""},
		{[]byte{}, "device-code"},
		{[]byte{0, 1, 2, 0xff}, ""},
		{[]byte("state"), "handle\x00with\xffbytes"},
		{bytes.Repeat([]byte{7}, 300), strings.Repeat("h", 1000)}, // a two-byte length
	} {
		b := Marshal(c.state, c.handle)
		state, handle, err := Unmarshal(b)
		if err != nil || !bytes.Equal(state, c.state) || handle != c.handle {
			t.Errorf("Unmarshal(Marshal(%q, %q)) = %q, %q, %v", c.state, c.handle, state, handle, err)
		}
		if len(c.state) == 0 && state != nil {
			t.Errorf("an empty state came back as %q, want nil", state)
		}
		if len(state) > 0 {
			state[0]++
			if !bytes.Equal(b, Marshal(c.state, c.handle)) {
				t.Errorf("changing the returned state changed the value: it shares its memory")
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	good := Marshal([]byte("state"), "handle")
	for name, b := range map[string][]byte{
		"empty":                 nil,
		"another version":       append([]byte{2}, good[1:]...),
		"no length":             {1},
		"an unending length":    {1, 0x80, 0x80},
		"a length past the end": {1, 10, 'a', 'b'},
		"a huge length":         {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, _, err := Unmarshal(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(%s) = %v, want ErrMalformed", name, err)
		}
	}
}
