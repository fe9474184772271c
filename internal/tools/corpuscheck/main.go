// Command corpuscheck runs the parser over a corpus of real-world email from other projects' test
// suites (the layout of shared/corpus: emails/<source>/*.eml, expected/<source>/<name>.json with the
// values those projects assert, reply/<source>/*.json with quoted-reply cases) and prints, per source
// and per field, how many asserted values the parser matches, every mail that fails to parse, and
// the reply cases' score. The corpus is read where it is; nothing of it is copied.
//
// It also scores the bounce recognition on three public bounce collections, read from checkouts
// of their repositories (see bounces.go), with the values their tests assert: recognised
// bounces, failed recipients, failure or delay, status and SMTP codes, reason class, diagnostic,
// original Message-ID. It exits 1 when a mail fails to parse or a bounce target is missed
// (95% of the bounces recognised, the failed recipients right for 90%).
//
//	go run ./internal/tools/corpuscheck -corpus ../shared/corpus [-v]
//	git clone https://github.com/rjbs/Mail-DeliveryStatus-BounceParser /tmp/bounces/Mail-DeliveryStatus-BounceParser
//	git clone https://github.com/postalsys/emailengine /tmp/bounces/emailengine
//	git clone https://github.com/jurov/gnu-mailman /tmp/bounces/gnu-mailman   # GNU Mailman 2.1
//	go run ./internal/tools/corpuscheck -bounces /tmp/bounces [-v]
//	go run ./internal/tools/corpuscheck -show mail.eml [-v]   # the signals of one mail
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mailintake/mailintake/internal/parse"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

type expected struct {
	Email      string         `json:"email"`
	Normalized map[string]any `json:"normalized"`
	Caution    string         `json:"caution"`
}

type tally struct{ ok, total int }

func main() {
	corpus := flag.String("corpus", "", "path of the corpus (e.g. ../shared/corpus)")
	bounceParser := flag.String("bounceparser", "", "path of a checkout of github.com/rjbs/Mail-DeliveryStatus-BounceParser")
	emailengine := flag.String("emailengine", "", "path of a checkout of github.com/postalsys/emailengine")
	mailman := flag.String("mailman2", "", "path of a checkout of GNU Mailman 2.1 (tests/bounces, tests/test_bounces.py)")
	bounces := flag.String("bounces", "", "a directory holding the three bounce checkouts, found by name (Mail-DeliveryStatus-BounceParser, emailengine, gnu-mailman or mailman2); the flags above override")
	verbose := flag.Bool("v", false, "print every mismatch")
	show := flag.String("show", "", "print the signals the parser reads from one mail file, as JSON (with -v, and its text body), and exit")
	flag.Parse()
	if *show != "" {
		raw, err := os.ReadFile(*show)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		m := parse.Parse(raw, parse.Options{})
		fmt.Println(protojson.Format(m.GetSignals()))
		if *verbose {
			fmt.Printf("text body:\n%s\n", m.GetTextBody())
		}
		return
	}
	if *bounces != "" {
		for _, c := range []struct {
			flag  *string
			names []string
		}{
			{bounceParser, []string{"Mail-DeliveryStatus-BounceParser", "bounceparser"}},
			{emailengine, []string{"emailengine"}},
			{mailman, []string{"gnu-mailman", "mailman2", "mailman"}},
		} {
			for _, n := range c.names {
				if st, err := os.Stat(filepath.Join(*bounces, n)); *c.flag == "" && err == nil && st.IsDir() {
					*c.flag = filepath.Join(*bounces, n)
				}
			}
		}
	}
	if *corpus == "" && *bounceParser == "" && *emailengine == "" && *mailman == "" {
		fmt.Fprintln(os.Stderr, "usage: corpuscheck [-corpus DIR] [-bounces DIR | -bounceparser DIR -emailengine DIR -mailman2 DIR] [-v] | -show FILE [-v]")
		os.Exit(2)
	}
	failed := 0
	if *corpus != "" {
		failed = checkEmails(*corpus, *verbose)
		checkReplies(*corpus, *verbose)
	}
	ok := true
	if *bounceParser != "" || *emailengine != "" || *mailman != "" {
		ok = checkBounces(*bounceParser, *emailengine, *mailman, *verbose)
	}
	if failed > 0 || !ok {
		os.Exit(1)
	}
}

func norm(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func addrs(list []*mailintakev1.Address) []string {
	var out []string
	for _, a := range list {
		out = append(out, strings.ToLower(a.GetAddress()))
	}
	return out
}

func strList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func lowerAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.ToLower(strings.Trim(x, "<> "))
	}
	return out
}

// wantAddrs returns the addresses of an asserted address list. Some sources assert an address
// in its "Name <addr>" form; the address is what is compared.
func wantAddrs(v any) []string {
	list := strList(v)
	for i, a := range list {
		if l, r := strings.LastIndexByte(a, '<'), strings.LastIndexByte(a, '>'); l >= 0 && r > l+1 && strings.Contains(a[l:r], "@") && !strings.HasPrefix(a[l+1:], "@") {
			list[i] = a[l+1 : r]
		}
	}
	return lowerAll(list)
}

// flatAttachments lists attachments depth first, each forwarded message's attachments after it.
// The mail gem's Message#attachments is flat in this way (it includes the attachments of an
// attached message/rfc822); this parser keeps them inside Attachment.message, so the gem's
// indexes are compared with this list.
func flatAttachments(list []*mailintakev1.Attachment) []*mailintakev1.Attachment {
	var out []*mailintakev1.Attachment
	for _, a := range list {
		out = append(out, a)
		out = append(out, flatAttachments(a.GetMessage().GetAttachments())...)
	}
	return out
}

func equalList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// compare checks one asserted value; scored is false for values that are another parser's own
// classification and have no counterpart here.
func compare(src string, m *mailintakev1.Message, field string, want any) (ok, scored bool, got any) {
	env := m.GetEnvelope()
	attachments := m.GetAttachments()
	if src == "mail-gem" {
		attachments = flatAttachments(attachments)
	}
	switch field {
	case "subject":
		return env.GetSubject() == want, true, env.GetSubject()
	case "from_addresses":
		g := addrs(env.GetFrom())
		return equalList(g, wantAddrs(want)), true, g
	case "to":
		g := addrs(env.GetTo())
		return equalList(g, wantAddrs(want)), true, g
	case "cc":
		g := addrs(env.GetCc())
		return equalList(g, wantAddrs(want)), true, g
	case "reply_to":
		g := addrs(env.GetReplyTo())
		return equalList(g, wantAddrs(want)), true, g
	case "sender":
		g := strings.ToLower(env.GetSender().GetAddress())
		return g == strings.ToLower(fmt.Sprint(want)), true, g
	case "message_id":
		return env.GetMessageId() == strings.Trim(fmt.Sprint(want), "<>"), true, env.GetMessageId()
	case "in_reply_to":
		g := lowerAll(env.GetInReplyTo())
		return equalList(g, lowerAll(strList(want))), true, g
	case "references":
		g := lowerAll(env.GetReferences())
		return equalList(g, lowerAll(strList(want))), true, g
	case "date":
		w, err := time.Parse(time.RFC3339, fmt.Sprint(want))
		if env.GetDate() == nil || err != nil {
			return false, true, env.GetDate()
		}
		return env.GetDate().AsTime().Equal(w), true, env.GetDate().AsTime()
	case "attachment_count":
		return float64(len(attachments)) == want, true, len(attachments)
	case "attachments":
		wm, _ := want.(map[string]any)
		for idx, v := range wm {
			var i int
			fmt.Sscan(idx, &i)
			if i >= len(attachments) {
				return false, true, len(attachments)
			}
			a := attachments[i]
			for k, val := range v.(map[string]any) {
				switch k {
				case "filename":
					if a.GetFilename() != val {
						return false, true, a.GetFilename()
					}
				case "content_type":
					if !strings.EqualFold(a.GetContentType(), fmt.Sprint(val)) {
						return false, true, a.GetContentType()
					}
				case "content_id":
					if a.GetContentId() != strings.Trim(fmt.Sprint(val), "<>") {
						return false, true, a.GetContentId()
					}
				case "size":
					if float64(a.GetSize()) != val {
						return false, true, a.GetSize()
					}
				}
			}
		}
		return true, true, nil
	case "text_contains":
		for _, s := range strList(want) {
			if !strings.Contains(norm(m.GetTextBody()), norm(s)) {
				return false, true, m.GetTextBody()
			}
		}
		return true, true, nil
	case "html_contains":
		for _, s := range strList(want) {
			if !strings.Contains(norm(m.GetHtmlBody()), norm(s)) {
				return false, true, m.GetHtmlBody()
			}
		}
		return true, true, nil
	case "text_equals", "decoded_body", "body_decoded", "dsn_explanation_text":
		return strings.TrimSpace(norm(m.GetTextBody())) == strings.TrimSpace(norm(fmt.Sprint(want))), true, m.GetTextBody()
	case "html_equals", "dsn_explanation_html":
		return strings.TrimSpace(norm(m.GetHtmlBody())) == strings.TrimSpace(norm(fmt.Sprint(want))), true, m.GetHtmlBody()
	case "mime_type":
		for _, h := range m.GetHeaders() {
			if strings.EqualFold(h.GetName(), "Content-Type") {
				mt, _, _ := strings.Cut(h.GetValue(), ";")
				mt = strings.ToLower(strings.TrimSpace(mt))
				return mt == want, true, mt
			}
		}
		return false, true, nil
	case "dsn_recipients":
		list, _ := want.([]any)
		got := m.GetSignals().GetBounceRecipients()
		if len(got) != len(list) {
			return false, true, got
		}
		for i, w := range list {
			wm := w.(map[string]any)
			fr := fmt.Sprint(wm["Final-Recipient"])
			if _, after, ok := strings.Cut(fr, ";"); ok {
				fr = after
			}
			st, _, _ := strings.Cut(fmt.Sprint(wm["Status"]), " ")
			if !strings.EqualFold(got[i].GetAddress(), strings.TrimSpace(fr)) || got[i].GetStatus() != st ||
				!strings.EqualFold(got[i].GetAction(), fmt.Sprint(wm["Action"])) {
				return false, true, got
			}
		}
		return true, true, nil
	}
	if strings.HasPrefix(field, "enmime.") {
		switch {
		case strings.HasSuffix(field, ".FileName"):
			for _, a := range m.GetAttachments() {
				if a.GetFilename() == want {
					return true, true, nil
				}
			}
			return false, true, nil
		case strings.HasSuffix(field, ".ContentID"), strings.HasSuffix(field, "[Content-Id]"):
			for _, a := range m.GetAttachments() {
				if a.GetContentId() == strings.Trim(fmt.Sprint(want), "<>") {
					return true, true, nil
				}
			}
			return false, true, nil
		}
	}
	return false, false, nil
}

func checkEmails(corpus string, verbose bool) (failed int) {
	files, _ := filepath.Glob(filepath.Join(corpus, "expected", "*", "*.json"))
	emails, _ := filepath.Glob(filepath.Join(corpus, "emails", "*", "*.eml"))
	bySource := map[string]map[string]*tally{}
	parsed := map[string]int{}
	var notScored []string
	plain := tally{} // values of fixtures without a "caution" note
	for _, e := range emails {
		raw, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		src := filepath.Base(filepath.Dir(e))
		parsed[src]++
		m := parse.Parse(raw, parse.Options{})
		if m.GetRaw() != nil {
			failed++
			fmt.Printf("FAILED TO PARSE %s: %v\n", e, m.GetProblems())
		}
	}
	for _, f := range files {
		var ex expected
		b, _ := os.ReadFile(f)
		if json.Unmarshal(b, &ex) != nil {
			continue
		}
		src := filepath.Base(filepath.Dir(f))
		raw, err := os.ReadFile(filepath.Join(corpus, ex.Email))
		if err != nil {
			fmt.Printf("missing email %s\n", ex.Email)
			continue
		}
		m := parse.Parse(raw, parse.Options{})
		for field, want := range ex.Normalized {
			ok, scored, got := compare(src, m, field, want)
			if !scored {
				notScored = append(notScored, src+":"+field)
				continue
			}
			if bySource[src] == nil {
				bySource[src] = map[string]*tally{}
			}
			t := bySource[src][field]
			if t == nil {
				t = &tally{}
				bySource[src][field] = t
			}
			t.total++
			if ex.Caution == "" {
				plain.total++
			}
			if ok {
				t.ok++
				if ex.Caution == "" {
					plain.ok++
				}
			} else if verbose {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				caution := ""
				if ex.Caution != "" {
					caution = " (caution: source quirk)"
				}
				fmt.Printf("MISS %s %s%s\n  want %s\n  got  %.300s\n", filepath.Base(f), field, caution, w, g)
			}
		}
	}
	var sources []string
	for s := range parsed {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	all := tally{}
	fmt.Println("\nemails parsed per source (a mail fails when nothing of it could be read):")
	for _, s := range sources {
		fmt.Printf("  %-28s %d\n", s, parsed[s])
	}
	fmt.Println("\nasserted values matched, per source and field:")
	for _, s := range sources {
		fields := bySource[s]
		if len(fields) == 0 {
			continue
		}
		var names []string
		st := tally{}
		for n, t := range fields {
			names = append(names, n)
			st.ok += t.ok
			st.total += t.total
		}
		sort.Strings(names)
		fmt.Printf("  %s: %d/%d\n", s, st.ok, st.total)
		for _, n := range names {
			fmt.Printf("      %-34s %d/%d\n", n, fields[n].ok, fields[n].total)
		}
		all.ok += st.ok
		all.total += st.total
	}
	fmt.Printf("\nTOTAL asserted values matched: %d/%d (%.1f%%); parse failures: %d\n", all.ok, all.total, 100*float64(all.ok)/float64(max(all.total, 1)), failed)
	fmt.Printf("      of fixtures without a caution note: %d/%d (%.1f%%)\n", plain.ok, plain.total, 100*float64(plain.ok)/float64(max(plain.total, 1)))
	if len(notScored) > 0 {
		sort.Strings(notScored)
		fmt.Printf("not scored (another parser's own classification): %d values, e.g. %s\n", len(notScored), strings.Join(notScored[:min(3, len(notScored))], ", "))
	}
	return failed
}

type replyCase struct {
	Source        string  `json:"source"`
	Kind          string  `json:"kind"`
	Input         string  `json:"input"`
	Fixture       string  `json:"fixture"`
	Email         string  `json:"email"`
	ExpectedReply *string `json:"expected_reply"`
	FirstFragment *string `json:"first_fragment"`
	FirstTrimmed  *string `json:"first_fragment_trimmed"`
	VisibleText   *string `json:"visible_text"`
}

func checkReplies(corpus string, verbose bool) (int, int) {
	files, _ := filepath.Glob(filepath.Join(corpus, "reply", "*", "*.json"))
	per := map[string]*tally{}
	all := tally{}
	for _, f := range files {
		var c replyCase
		b, _ := os.ReadFile(f)
		if json.Unmarshal(b, &c) != nil {
			continue
		}
		input := c.Input
		if c.Email != "" {
			raw, err := os.ReadFile(filepath.Join(corpus, c.Email))
			if err != nil {
				continue
			}
			input = parse.Parse(raw, parse.Options{}).GetTextBody()
		}
		if c.Fixture != "" {
			fb, err := os.ReadFile(filepath.Join(corpus, c.Fixture))
			if err != nil {
				continue
			}
			input = string(fb)
		}
		var want *string
		for _, w := range []*string{c.ExpectedReply, c.FirstTrimmed, c.FirstFragment, c.VisibleText} {
			if w != nil {
				want = w
				break
			}
		}
		if want == nil {
			continue
		}
		var r parse.Reply
		if c.Kind == "html" {
			r = parse.SplitReply(parse.HTMLToText(input))
			*want = parse.HTMLToText(*want)
		} else {
			r = parse.SplitReply(norm(input))
		}
		// Sources differ on signatures (talon keeps them in the reply, the others split them
		// off); both are returned, so either counts.
		got := r.NewText
		if trimLines(r.Body) == trimLines(*want) {
			got = r.Body
		}
		t := per[c.Source]
		if t == nil {
			t = &tally{}
			per[c.Source] = t
		}
		t.total++
		all.total++
		if trimLines(got) == trimLines(*want) {
			t.ok++
			all.ok++
		} else if verbose {
			fmt.Printf("REPLY MISS %s\n  want %q\n  got  %q\n", f, strings.TrimSpace(*want), strings.TrimSpace(got))
		}
	}
	fmt.Println("\nquoted-reply cases with the expected new text:")
	var srcs []string
	for s := range per {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	for _, s := range srcs {
		fmt.Printf("  %-28s %d/%d\n", s, per[s].ok, per[s].total)
	}
	fmt.Printf("TOTAL reply cases: %d/%d (%.1f%%)\n", all.ok, all.total, 100*float64(all.ok)/float64(max(all.total, 1)))
	return all.ok, all.total
}

// trimLines normalises line ends and trailing spaces for comparing texts.
func trimLines(s string) string {
	lines := strings.Split(norm(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
