package parse

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func TestSplitReply(t *testing.T) {
	cases := []struct {
		name, in, newText, sig string
		quotedHas              string
	}{
		{"gmail en", "Thanks, that fixed it.\n\nOn Tue, 3 Mar 2026 at 10:15, Help Desk <help@example.com> wrote:\n> Please restart the printer.\n", "Thanks, that fixed it.", "", "Please restart"},
		{"gmail wrapped", "Works now.\n\nOn Tue, Mar 3, 2026 at 10:15 AM Help Desk <\nhelp@example.com> wrote:\n\n> Please restart.\n", "Works now.", "", "Please restart"},
		{"apple mail de", "Danke, es geht wieder.\n\nAm 03.03.2026 um 10:15 schrieb Help Desk <help@example.com>:\n\n> Bitte neu starten.\n", "Danke, es geht wieder.", "", "Bitte"},
		{"gmail fr", "Merci, c'est réparé.\n\nLe mar. 3 mars 2026 à 10:15, Help Desk <help@example.com> a écrit :\n> Redémarrez.\n", "Merci, c'est réparé.", "", "Redémarrez"},
		{"gmail es", "Gracias, ya funciona.\n\nEl mar, 3 mar 2026 a las 10:15, Help Desk (<help@example.com>) escribió:\n> Reinicie.\n", "Gracias, ya funciona.", "", "Reinicie"},
		{"outlook en", "It works.\n\nJohn\n\nFrom: Help Desk <help@example.com>\nSent: Tuesday, March 3, 2026 10:15 AM\nTo: John <john@example.net>\nSubject: RE: [#421] Printer\n\nPlease restart.\n", "It works.\n\nJohn", "", "Please restart"},
		{"outlook de", "Geht wieder.\n\nVon: Help Desk <help@example.com>\nGesendet: Dienstag, 3. März 2026 10:15\nAn: John <john@example.net>\nBetreff: AW: Drucker\n\nBitte neu starten.\n", "Geht wieder.", "", "Bitte"},
		{"outlook fr", "C'est bon.\n\nDe : Help Desk <help@example.com>\nEnvoyé : mardi 3 mars 2026 10:15\nÀ : John <john@example.net>\nObjet : RE: Imprimante\n", "C'est bon.", "", "Objet"},
		{"outlook es", "Listo.\n\nDe: Help Desk <help@example.com>\nEnviado: martes, 3 de marzo de 2026 10:15\nPara: John <john@example.net>\nAsunto: RE: Impresora\n", "Listo.", "", "Asunto"},
		{"outlook separator", "Done.\n\n-----Original Message-----\nFrom: Help Desk\nSent: today\n", "Done.", "", "Original Message"},
		{"signature", "See attached.\n\n-- \nJohn Doe\nACME Corp\n", "See attached.", "-- \nJohn Doe\nACME Corp", ""},
		{"mobile", "On my way.\n\nSent from my iPhone", "On my way.", "Sent from my iPhone", ""},
		{"inline answers kept", "> Is it on?\nYes.\n> Plugged in?\nNo.\n", "Yes.\nNo.", "", "Plugged in?\nNo."},
		{"forward is content", "FYI\n\n---------- Forwarded message ---------\nFrom: a@example.com\nDate: today\nSubject: x\nTo: b@example.com\n\nThe text.\n", "FYI\n\n---------- Forwarded message ---------\nFrom: a@example.com\nDate: today\nSubject: x\nTo: b@example.com\n\nThe text.", "", ""},
		{"no quote", "Just a question.\n", "Just a question.", "", ""},
		{"apple mail en", "Works.\n\nOn 3 Mar 2026, at 10:15, Help Desk <help@example.com> wrote:\n\n> Please restart.\n", "Works.", "", "Please restart"},
		{"apple mail fr", "Ça marche.\n\nLe 3 mars 2026 à 10:15, Help Desk <help@example.com> a écrit :\n\n> Redémarrez.\n", "Ça marche.", "", "Redémarrez"},
		{"apple mail es", "Funciona.\n\nEl 3 mar 2026, a las 10:15, Help Desk <help@example.com> escribió:\n\n> Reinicie.\n", "Funciona.", "", "Reinicie"},
		{"gmail de", "Geht wieder.\n\nAm Di., 3. März 2026 um 10:15 Uhr schrieb Help Desk <help@example.com>:\n> Bitte neu starten.\n", "Geht wieder.", "", "Bitte"},
		{"apple mail mobile es", "Listo.\n\nEnviado desde mi iPhone\n\nEl 3 mar 2026, a las 10:15, Help Desk <help@example.com> escribió:\n\n> Reinicie.\n", "Listo.", "", "Reinicie"},
	}
	for _, c := range cases {
		r := SplitReply(c.in)
		if r.NewText != c.newText {
			t.Errorf("%s: NewText = %q, want %q", c.name, r.NewText, c.newText)
		}
		if c.sig != "" && r.Signature != c.sig {
			t.Errorf("%s: Signature = %q, want %q", c.name, r.Signature, c.sig)
		}
		if c.quotedHas != "" && !strings.Contains(r.Quoted, c.quotedHas) {
			t.Errorf("%s: Quoted = %q lacks %q", c.name, r.Quoted, c.quotedHas)
		}
	}
}

// The cheap tests run before the reply regexps never turn away a line the regexp matches.
func TestReplyPrefiltersAreNecessary(t *testing.T) {
	lines := []string{
		"---------- Forwarded message ---------", "  >> Forwarded message", "Begin forwarded message:", "\tbegin forwarded message:",
		"=== Weitergeleitete Nachricht ===", "Sent from my iPhone", "  sent from my iPad", "Get Outlook for Android",
		"Gesendet von meinem Telefon", "Von meinem iPhone gesendet", "Envoyé de mon iPhone", "Enviado desde mi iPhone",
		"Inviato da iPhone", "Verzonden met mijn telefoon", "Skickat från min iPhone", "Sendt fra min iPhone", "ſent from my iPhone",
		"Hello there", "", " ", "-", "b", "Kind regards", "\u212aind regards", "  Best,", "Mit freundlichen Grüßen", "Ystävällisin terveisin",
		"Thanks! Anna", "Cordialement", "Un saludo", "Regards", "Yours sincerely, Bob", "Groeten", "Liebe Grüße", "Vennlig hilsen",
		"Atentamente", "Salutations distinguées", "Warm regards", "Many thanks", "Cheers", "Saludos",
		"Thanks! On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:", "ok On 3 Mar 2026, Help Desk <h@e.com> ſchrieb:",
		"Danke -- Am 3. März 2026 um 10:15 schrieb Help <h@e.com> :", "jo On 12.03.2026 Иван написал\f:  ",
		"ok on 2026-03-03 Иван наᲃисал:", "Listo On 3 mar 2026 Help escribió:", "x on 2026/1/1 a@b.c yazdı:", "Thanks On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:\f", "Beſt regards", "Kinð regards", "3 Mar 2026 a@b.c ſchrieb am Montag", "ᲃ a@b.c 2026 наᲃисал:", "Un saludo", "UN SALUDO", "un  saludo",
	}
	for _, v := range strings.Split(strings.Trim(valedictions, "()"), "|") {
		lines = append(lines, v, v+",", v+" Anna")
	}
	matched := 0
	for _, l := range lines {
		if valediction.MatchString(l) {
			matched++
		}
		for _, v := range []string{l, " " + l, "\t" + l, strings.ToUpper(l), strings.ToLower(l)} {
			if forwarded.MatchString(v) && !mayBeForwardLine(v) {
				t.Errorf("%q: forwarded matches but the prefilter turns it away", v)
			}
			if mobileSig.MatchString(v) && !mayBeMobileSig(v) {
				t.Errorf("%q: mobileSig matches but the prefilter turns it away", v)
			}
			if hasVerb.MatchString(v) && !containsWroteVerb(v) {
				t.Errorf("%q: hasVerb matches but the prefilter turns it away", v)
			}
			if sharedLine.MatchString(v) && !endsWithColon(v) {
				t.Errorf("%q: sharedLine matches but it does not end with a colon", v)
			}
			if sharedLine.MatchString(v) && !mayBeSharedLine(v) {
				t.Errorf("%q: sharedLine matches but the prefilter turns it away", v)
			}
			if (endsWithVerb.MatchString(v) || sharedLine.MatchString(v)) && !endsWithWroteVerb(v) {
				t.Errorf("%q: endsWithVerb or sharedLine matches but the prefilter turns it away", v)
			}
			if valediction.MatchString(v) && !mayBeValediction(v) {
				t.Errorf("%q: valediction matches but the prefilter turns it away", v)
			}
			if headerStart.MatchString(v) && !strings.Contains(v, ":") {
				t.Errorf("%q: headerStart matches without a colon", v)
			}
		}
	}
	if matched < 90 {
		t.Errorf("valediction matched only %d of the sample lines", matched)
	}
	if mayBeValediction("--") || mayBeValediction("  1234") || mayBeValediction("Hello") || mayBeValediction("This works now") {
		t.Error("the valediction prefilter lets through lines no alternative starts like")
	}
}

// TestHasEmailMatchesRegexp compares hasEmail with the regexp it replaced on every string of up
// to five characters over an alphabet of the bytes it looks at, and on random longer ones.
func TestHasEmailMatchesRegexp(t *testing.T) {
	re := regexp.MustCompile(`[^\s<>()"]+@[^\s<>()"]+`)
	alphabet := []string{"a", "@", " ", "<", ">", "(", ")", "\"", "\t", "\n", "\f", "\r", "\v", "é", "\xff", "."}
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		if got, want := hasEmail(s), re.MatchString(s); got != want {
			t.Fatalf("hasEmail(%q) = %v, the regexp says %v", s, got, want)
		}
		if depth == 5 {
			return
		}
		for _, c := range alphabet {
			walk(s+c, depth+1)
		}
	}
	walk("", 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(60) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		if s := b.String(); hasEmail(s) != re.MatchString(s) {
			t.Fatalf("hasEmail(%q) = %v, the regexp says otherwise", s, hasEmail(s))
		}
	}
}

// TestMayBeSharedLine checks on random lines made of the pieces sharedLine looks for that the
// prefilter never turns away a line it matches, and that it turns away the usual header.
func TestMayBeSharedLine(t *testing.T) {
	pieces := []string{"on", "On", "ON", " ", "\t", "-", "--", "x", "1", "Mar 3, 2026 at 10:15", "a@b.c", "wrote", ":", "\f", "é"}
	rng := rand.New(rand.NewPCG(3, 4))
	matched := 0
	pick := func(from []string, min, max int) string {
		var b strings.Builder
		for range min + rng.IntN(max-min+1) {
			b.WriteString(from[rng.IntN(len(from))])
		}
		return b.String()
	}
	for range 100000 {
		// Lines shaped like the pattern (text, a separator, "on", a date, the verb, a colon),
		// with their pieces drawn at random, and lines of random pieces alone.
		l := pick(pieces, 0, 3) + pick([]string{" ", "\t", "-", "--", " -- ", "\f"}, 0, 2) + pick([]string{"on", "On", "ON", "x"}, 1, 1) +
			pick([]string{" ", "\t", "\f", "-"}, 0, 2) + pick(pieces, 1, 6) + pick([]string{" wrote", " schrieb", "wrote"}, 1, 1) +
			pick([]string{" ", ":", "\t"}, 0, 3)
		if rng.IntN(4) == 0 {
			l = pick(pieces, 2, 12)
		}
		if sharedLine.MatchString(l) {
			matched++
			if !mayBeSharedLine(l) {
				t.Fatalf("%q: sharedLine matches but mayBeSharedLine turns it away", l)
			}
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d random lines matched sharedLine", matched)
	}
	if mayBeSharedLine("On Tue, 3 Mar 2026 at 10:15, Help Desk <help@example.com> wrote:") {
		t.Error("the prefilter lets through the usual header, whose On comes first")
	}
}

// TestNormalizeNewlines compares normalizeNewlines with the two replacements it replaced.
func TestNormalizeNewlines(t *testing.T) {
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		want := strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
		if got := normalizeNewlines(s); got != want {
			t.Fatalf("normalizeNewlines(%q) = %q, want %q", s, got, want)
		}
		if depth == 7 {
			return
		}
		for _, c := range []string{"a", "\r", "\n", "é"} {
			walk(s+c, depth+1)
		}
	}
	walk("", 0)
}
