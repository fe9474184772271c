package parse

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/mail")

// TestGolden parses every testdata/mail/*.eml and compares the message with its .golden.json
// (go test ./internal/parse -run Golden -update rewrites them). The messages are the project's own,
// shaped after what service desks receive.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/mail/*.eml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := Parse(raw, Options{TicketPattern: regexp.MustCompile(`\[#(\d+)\]`)})
		// The parsed message must be sendable: valid protobuf (UTF-8 strings).
		if _, err := proto.Marshal(m); err != nil {
			t.Errorf("%s: the parsed message cannot be marshalled: %v", f, err)
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		json.Unmarshal(b, &v)
		got, _ := json.MarshalIndent(v, "", "  ")
		got = append(got, '\n')
		golden := strings.TrimSuffix(f, ".eml") + ".golden.json"
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%s: %v (run with -update)", golden, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (run go test -run Golden -update and review the diff):\n%s", f, golden, got)
		}
	}
}

// A parsed message refers to nothing of its input (unless it carries the input as raw), so a
// caller may reuse the input's buffer once the message is parsed.
func TestParsedMessageDoesNotShareItsInput(t *testing.T) {
	files, _ := filepath.Glob("testdata/mail/*.eml")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := Parse(raw, Options{MaxInlineAttachment: 1 << 30})
		if m.GetRaw() != nil {
			continue
		}
		before := proto.Clone(m)
		for i := range raw {
			raw[i] = 'X'
		}
		if !proto.Equal(m, before) {
			t.Errorf("%s: the parsed message changed when its input was overwritten", f)
		}
	}
}
