package parse

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestContentFingerprint(t *testing.T) {
	mail := "From: Customer <c@customer.example>\nTo: sales@desk.example, support@desk.example\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; d=customer.example;\n\tb=abc\n" +
		"Subject: order\nMessage-ID: <m1@customer.example>\n\nplease send 3\n"
	// The copy delivered to sales@ and the one delivered to support@, each with its own trace.
	sales := crlf("From c@customer.example Mon Mar  2 10:00:00 2026\n" +
		"Return-Path: <c@customer.example>\nDelivered-To: sales@desk.example\nX-Original-To: sales@desk.example\n" +
		"Received: from mx.desk.example by store-1\n\tfor <sales@desk.example>; Mon, 2 Mar 2026 10:00:01 +0000\n" +
		"Received: from mail.customer.example by mx.desk.example; Mon, 2 Mar 2026 10:00:00 +0000\n" +
		"Authentication-Results: mx.desk.example; dkim=pass\nARC-Seal: i=1; cv=none\nReceived-SPF: pass\n" + mail)
	support := crlf("Return-Path: <c@customer.example>\nDelivered-To: support@desk.example\n" +
		"Received: from mx.desk.example by store-2\n for <support@desk.example>; Mon, 2 Mar 2026 10:00:02 +0000\n" +
		"Received: from mail.customer.example by mx.desk.example; Mon, 2 Mar 2026 10:00:00 +0000\n" +
		"X-Spam-Status: No, score=-0.1\n\ttests=NONE\nX-Spam-Flag: NO\nX-MS-Exchange-Organization-SCL: 1\n" +
		"X-Virus-Scanned: clamav\nStatus: RO\nX-UID: 17\n" + mail)
	bare := crlf(mail)
	want := fmt.Sprintf("%016x", xxhash.Sum64(bare))
	for name, raw := range map[string][]byte{"sales": sales, "support": support, "bare": bare} {
		if got := ContentFingerprint(raw); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	// Parse sets it on the whole message; it differs from sha256.
	m := Parse(sales, Options{})
	if m.ContentFingerprint != want || len(m.Sha256) != 64 {
		t.Errorf("Parse: fingerprint %q, sha256 %q", m.ContentFingerprint, m.Sha256)
	}
	// Delivery fields anywhere in the header, also between the sender's, are left out.
	mid := crlf(strings.Replace(mail, "Subject: order\n", "Subject: order\nX-Spam-Score: 1\nAuthentication-Results: x\n  continued\n", 1))
	if ContentFingerprint(mid) != want {
		t.Error("delivery fields in the middle of the header count")
	}
	// What the sender wrote counts: a field, the DKIM signature, the body.
	for _, changed := range []string{
		strings.Replace(mail, "order", "order!", 1),
		strings.Replace(mail, "b=abc", "b=abd", 1),
		strings.Replace(mail, "please send 3", "please send 4", 1),
		"X-Mailer: x\n" + mail,
		strings.Replace(mail, "\n\n", "\nStatusX: 1\n\n", 1),
	} {
		if ContentFingerprint(crlf(changed)) == want {
			t.Errorf("a change is not seen: %q", changed)
		}
	}
	// No header end, no header, nothing.
	for _, raw := range []string{"", "\r\n", "Received: x", "Received: x\r\n", "Subject: x", "body only"} {
		if got := ContentFingerprint([]byte(raw)); len(got) != 16 {
			t.Errorf("%q: %q", raw, got)
		}
	}
	if ContentFingerprint([]byte("Received: x\r\n\r\nbody")) != ContentFingerprint([]byte("\r\nbody")) {
		t.Error("a header of delivery fields only")
	}
}

// BenchmarkContentFingerprint measures the fingerprint alone over make bench-parse's corpus,
// against SHA-256 of the same bytes (what Message.sha256 already costs).
func BenchmarkContentFingerprint(b *testing.B) {
	corpus, total := benchCorpus()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range corpus {
			ContentFingerprint(raw)
		}
	}
}
