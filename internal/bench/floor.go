package bench

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// FloorResult is what the floor client read.
type FloorResult struct {
	Messages int
	Bytes    int64
	Wall     time.Duration
}

// Floor is the raw IMAP floor: log in over TLS, UID FETCH 1:* (BODY.PEEK[]) and read every
// literal to the end without parsing or keeping it. No client can get the mail out faster.
// A nil cfg means plaintext IMAP (the same reads, without TLS).
func Floor(addr, user, password string, cfg *tls.Config) (FloorResult, error) {
	start := time.Now()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return FloorResult{}, err
	}
	// Large socket reads (under TLS), as mailintake's own connections do.
	var conn net.Conn = &readerConn{Conn: raw, r: bufio.NewReaderSize(raw, 256<<10)}
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return FloorResult{}, err
		}
		conn = tc
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		return FloorResult{}, err
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return FloorResult{}, err
	}
	var all imap.UIDSet
	all.AddRange(1, 0) // 1:*
	cmd := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var res FloorResult
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				n, err := io.Copy(io.Discard, b.Literal)
				res.Bytes += n
				if err != nil {
					return res, err
				}
			}
		}
		res.Messages++
	}
	if err := cmd.Close(); err != nil {
		return res, err
	}
	res.Wall = time.Since(start)
	c.Logout().Wait()
	return res, nil
}

// readerConn reads a connection through a buffer.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CPUSeconds returns the user+system CPU time a process has used (Linux /proc).
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces: the fields of interest follow its closing ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// ProcTimes returns a process's parent, the user+system CPU seconds it has used, and those of
// its children that have exited and been waited for (Linux /proc).
func ProcTimes(pid int) (ppid int, self, children float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ppid, _ = strconv.Atoi(f[1])
	var t [4]float64
	for i := range t {
		t[i], _ = strconv.ParseFloat(f[11+i], 64) // utime, stime, cutime, cstime
	}
	return ppid, (t[0] + t[1]) / 100, (t[2] + t[3]) / 100, nil
}

// Memory returns a process's resident set size and its peak, in KiB (Linux /proc).
func Memory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			peak, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, peak, nil
}
