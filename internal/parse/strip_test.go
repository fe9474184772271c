package parse

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// stripLineBreaks gives what a plain removal of the line breaks gives, for lines of the usual
// width (76, the copy of fixed size), of other widths, of mixed widths and line ends, with a
// first line cut short and a last one without a break; into another buffer and in place.
func TestStripLineBreaks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	line := func(n int) string {
		const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		b := make([]byte, n)
		for i := range b {
			b[i] = a[rng.IntN(len(a))]
		}
		return string(b)
	}
	var cases []string
	for _, width := range []int{76, 64, 72, 1} {
		for _, first := range []int{width, 10, 0} {
			for _, odd := range []int{-1, 5, 200} { // a line of another width at 5, at 200, or none
				var s strings.Builder
				s.WriteString(line(first) + "\r\n")
				for i := range 300 {
					w := width
					if i == odd {
						w = width + 3
					}
					end := "\r\n"
					if i%97 == 50 {
						end = "\n" // a bare LF
					}
					s.WriteString(line(w) + end)
				}
				s.WriteString(line(width / 2)) // no break at the end
				cases = append(cases, s.String())
			}
		}
	}
	// A CR that is not part of a line end stays (the decoder skips it); the caller passes whole
	// lines, so src ends with a line break.
	cases = append(cases, "", "\r\n", "\n\n", strings.Repeat("A", 76)+"\r\n", strings.Repeat(strings.Repeat("B", 76)+"\r\n", 3)+strings.Repeat("C", 75)+"\rD\r\n"+strings.Repeat("E", 76)+"\r\n")
	for i, c := range cases {
		want := strings.NewReplacer("\r\n", "", "\n", "").Replace(c)
		if got := stripLineBreaks(make([]byte, len(c)), []byte(c)); string(got) != want {
			t.Errorf("case %d: got %d bytes, want %d", i, len(got), len(want))
		}
		buf := []byte(c)
		if got := stripLineBreaks(buf, buf); !bytes.Equal(got, []byte(want)) {
			t.Errorf("case %d in place: got %d bytes, want %d", i, len(got), len(want))
		}
	}
}
