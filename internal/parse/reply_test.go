package parse

import (
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
	if mayBeValediction("--") || mayBeValediction("  1234") || mayBeValediction("Hello") {
		t.Error("the valediction prefilter lets through lines no alternative starts like")
	}
}
