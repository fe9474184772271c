package parse

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"

	"github.com/cespare/xxhash/v2"
)

// ContentFingerprint returns Message.content_fingerprint of a raw message: 16 lower-case hex
// digits of the 64-bit xxHash (XXH64, seed 0) of the message with the header fields each
// delivery adds left out, so one mail delivered into two mailboxes (a customer who wrote to
// sales@ and support@ at once) has the same fingerprint in both. Everything else counts, byte
// for byte: the other header fields in their order and as folded, and the body.
//
// The fields left out (deliveryField) are those written by the receiving side, per delivery or
// per mailbox: trace fields (Received, Return-Path, Delivered-To, X-Original-To, Envelope-To and
// their variants), authentication results (Authentication-Results, ARC-*, Received-SPF), spam
// and virus filters' stamps (X-Spam-*, X-Virus-*, Exchange Online Protection, rspamd, amavis,
// Proofpoint, Barracuda, IronPort), Exchange's organisation fields, forwarding and Sieve notes
// and the flags some stores keep in the header (Status, X-Status, X-Keywords, X-UID,
// X-Mozilla-Status). An mbox "From " line before the header is left out too. Fields the
// sender writes stay, DKIM-Signature included: the sender signs once, for every recipient.
//
// It is not a cryptographic hash (Message.sha256 is): with the Message-ID it tells a second
// delivery of a mail from another mail, and costs a fraction of a second SHA-256.
func ContentFingerprint(raw []byte) string {
	d := xxhash.New()
	end := writeContentHeader(d, raw)
	d.Write(raw[end:]) // the body, in place
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], d.Sum64())
	return hex.EncodeToString(sum[:])
}

// writeContentHeader writes the header fields of raw that are not delivery fields to d (runs of
// kept lines as they are, no copy) and returns where the header ends (its blank line, which
// is the body's).
func writeContentHeader(d *xxhash.Digest, raw []byte) int {
	end := headerEnd(raw)
	kept := 0         // start of the run of kept bytes not yet written
	skipping := false // the current field is left out
	for i := 0; i < end; {
		next := end
		if j := bytes.IndexByte(raw[i:end], '\n'); j >= 0 {
			next = i + j + 1
		}
		if c := raw[i]; c != ' ' && c != '\t' { // a continuation line goes with its field
			skip := i == 0 && bytes.HasPrefix(raw, []byte("From ")) || deliveryField(raw[i:next])
			if skip && !skipping {
				d.Write(raw[kept:i])
			} else if !skip && skipping {
				kept = i
			}
			skipping = skip
		}
		i = next
	}
	if !skipping {
		d.Write(raw[kept:end])
	}
	return end
}

// deliveryFields are the names (lower case) of the fields the receiving side adds.
var deliveryFields = map[string]bool{
	// Trace fields (RFC 5321 4.4) and the envelope recipient as MTAs and delivery agents note it.
	"received": true, "x-received": true, "return-path": true, "delivered-to": true,
	"x-delivered-to": true, "x-original-to": true, "envelope-to": true, "x-envelope-to": true,
	"x-envelope-from": true, "x-rcpt-to": true,
	// Authentication results of the receiving server (RFC 8601, RFC 7208, RFC 8617 ARC-* below).
	"authentication-results": true, "x-original-authentication-results": true, "received-spf": true,
	// Virus and spam filters of the receiving side (X-Spam-* and X-Virus-* below).
	"x-quarantine-id": true, "x-greylist": true, "x-forefront-antispam-report": true,
	"x-microsoft-antispam": true, "x-microsoft-antispam-mailbox-delivery": true,
	"x-microsoft-antispam-message-info": true,
	// Forwarding by the recipient's mailbox (Gmail), Sieve.
	"x-forwarded-to": true, "x-forwarded-for": true, "x-sieve": true, "x-sieve-redirected-from": true,
	// Flags a store keeps in the header (mbox, Maildir converters, Thunderbird).
	"status": true, "x-status": true, "x-keywords": true, "x-uid": true, "x-imap": true,
	"x-imapbase": true, "x-mozilla-status": true, "x-mozilla-status2": true, "x-mozilla-keys": true,
}

// deliveryPrefixes are name prefixes (lower case) of receiving-side fields.
var deliveryPrefixes = [][]byte{
	[]byte("arc-"), []byte("x-spam-"), []byte("x-virus-"), []byte("x-rspamd-"), []byte("x-amavis-"),
	[]byte("x-ms-exchange-organization-"), []byte("x-proofpoint-"), []byte("x-barracuda-"), []byte("x-ironport-"),
}

// deliveryField reports whether a header line starts a field the receiving side adds.
func deliveryField(line []byte) bool {
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:c], " \t")
	var buf [48]byte
	if len(name) > len(buf) || len(name) < len("x-uid") {
		return false // no delivery field name is shorter or longer
	}
	lower := buf[:len(name)]
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	if deliveryFields[string(lower)] {
		return true
	}
	for _, p := range deliveryPrefixes {
		if len(lower) > len(p) && bytes.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}
