//go:build faults

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// largeMailPeakRSSMB is the peak RSS the server must stay under while 50 mailboxes receive a
// 40 MB message each at the same moment: the global body budget (128 MiB by default) holds the
// bodies between socket and parser, the consumer takes up to 100 in flight, so every session may fetch at once, and the parsed messages keep
// only the attachments' size and hash (they are over the inline limit).
const largeMailPeakRSSMB = 512

// TestFaultLargeMailAtOnce delivers a 40 MB message to each of 50 idle mailboxes at the same
// moment: every message arrives, and the server's peak RSS stays under largeMailPeakRSSMB
// (without the global body budget every session would hold its 40 MB body at once: 2 GB).
func TestFaultLargeMailAtOnce(t *testing.T) {
	const boxes, attachment = 50, 30 << 20 // 30 MB of binary, 40 MB as base64
	users := map[string]string{}
	for i := range boxes {
		users[fmt.Sprintf("large%02d@example.com", i)] = dvPass
	}
	dv := dovecot.Start(t, users)
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	for u := range users {
		addDovecotMailbox(t, g, dv, u, "--start-from", "new", "--after-ack", "delete")
	}
	c := adminClient(t, d, data)
	eventually(t, "every session idle", func() bool {
		resp, err := c.Mailboxes.ListMailboxes(context.Background(), &mailintakev1.ListMailboxesRequest{PageSize: 500})
		if err != nil {
			return false
		}
		for _, mb := range resp.GetMailboxes() {
			if mailboxState(t, c, mb.GetId()).GetState() != mailintakev1.MailboxState_MAILBOX_STATE_IDLE {
				return false
			}
		}
		return true
	})
	rssIdle := rssKB(t, d.cmd.Process.Pid)

	// One 40 MB message file, hard-linked into every mailbox's Maildir at once.
	bin := make([]byte, attachment)
	rand.Read(bin)
	var raw strings.Builder
	raw.WriteString("From: Customer <c@example.net>\r\nTo: support@example.com\r\nSubject: large scan\r\nMessage-ID: <large@example.net>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe scan is attached.\r\n" +
		"--b\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(bin)
	for len(enc) > 76 {
		raw.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	raw.WriteString(enc + "\r\n--b--\r\n")
	src := filepath.Join(dv.Dir, "large.eml")
	if err := os.WriteFile(src, []byte(raw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("message: %d MB", raw.Len()>>20)
	dv.DeliverMany(t, "large00@example.com", nil) // creates the Maildir layout
	var links []string
	for u := range users {
		dir := filepath.Join(dv.Dir, "home", u, "Maildir")
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(dir, sub), 0o700)
			os.Chown(filepath.Join(dir, sub), 65534, 65534)
		}
		os.Chown(dir, 65534, 65534)
		links = append(links, filepath.Join(dir, "new", fmt.Sprintf("%d.large.mailintake", time.Now().UnixNano())))
	}
	os.Chown(src, 65534, 65534)
	for _, l := range links {
		if err := os.Link(src, l); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 100})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	seen := map[string]bool{}
	for len(seen) < boxes {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(seen), boxes, err)
		}
		m := resp.GetMessage()
		if len(m.GetAttachments()) != 1 || m.GetAttachments()[0].GetSize() != attachment || m.GetRawSize() < 40<<20 {
			t.Errorf("message of %s: %d attachments, raw %d bytes", m.GetMailboxId(), len(m.GetAttachments()), m.GetRawSize())
		}
		seen[m.GetMailboxId()] = true
		if _, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{m.GetId()}}); err != nil {
			t.Fatal(err)
		}
	}
	peak := procStatusKB(t, d.cmd.Process.Pid, "VmHWM")
	t.Logf("%d × %d MB delivered in %s; server RSS idle %d MB, peak %d MB (limit %d MB)", boxes, raw.Len()>>20, time.Since(start).Round(time.Millisecond), rssIdle>>10, peak>>10, largeMailPeakRSSMB)
	if peak>>10 > largeMailPeakRSSMB {
		t.Errorf("peak RSS %d MB while %d mailboxes received %d MB each, over %d MB", peak>>10, boxes, raw.Len()>>20, largeMailPeakRSSMB)
	}
	eventually(t, "deleted after ack", func() bool {
		for u := range users {
			if n, _ := dv.Status(t, u, "INBOX"); n != 0 {
				return false
			}
		}
		return true
	})
}
