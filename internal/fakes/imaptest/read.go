package imaptest

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Messages returns the raw bytes of every message in a user's folder, in UID order, read over
// IMAP as a client would (so what a test checks is what the server serves).
func (s *Server) Messages(t testing.TB, username, password, folder string) [][]byte {
	t.Helper()
	s.mu.Lock()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.mu.Unlock()
	var c *imapclient.Client
	var err error
	if s.opts.TLS != nil {
		c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	} else {
		c, err = imapclient.DialInsecure(addr, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(username, password).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		for _, b := range m.BodySection {
			out = append(out, b.Bytes)
		}
	}
	return out
}
