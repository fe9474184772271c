package imapconn

import (
	"bytes"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// raisedMark is the low-water mark a large literal gets here: lowWaterMark, capped by the
// kernel at half the largest TCP receive buffer; a byte on a kernel where it is not used.
func raisedMark(t *testing.T) int {
	t.Helper()
	if !lowWaterKernel() {
		return 1
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	largest, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("tcp_rmem %q: %v", b, err)
	}
	return min(lowWaterMark, largest/2)
}

func TestKernelAtLeast(t *testing.T) {
	for release, want := range map[string]bool{
		"6.1.0-27-amd64": true, "5.10.0-33-amd64": true, "5.10-rc1": true, "6.18.44-fc-v1294": true,
		"5.9.16": false, "4.18.0-553.el8_10.x86_64": false, "5.4.0-200-generic": false,
		"10.0": true, "": false, "x.y": false, "5": false,
	} {
		if got := kernelAtLeast(release, 5, 10); got != want {
			t.Errorf("kernelAtLeast(%q, 5, 10) = %v, want %v", release, got, want)
		}
	}
}

// countingConn counts the reads that reach the socket.
type countingConn struct {
	*net.TCPConn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.TCPConn.Read(p)
}

func rcvLowat(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// While a large literal trickles in, the socket wakes its reader only once lowWaterMark bytes
// are queued: far fewer reads than the server's writes. The mark is down again for the
// literal's last bytes (which arrive, and are read, before anything follows them) and for what
// follows; a literal too small for the margin never raises it.
func TestBufferedConnLowWater(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		raise bool
	}{
		{"large literal", 3 << 20, true},
		{"literal within the margin", lowWaterMark + lowWaterMargin - 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			data := testutil.RandomBytes(tc.size, 7)
			const chunk = 16 << 10 // a TLS record's worth, as a server sends them
			gotLiteral := make(chan struct{})
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				for off := 0; off < len(data); off += chunk {
					if _, err := s.Write(data[off:min(off+chunk, len(data))]); err != nil {
						return
					}
					time.Sleep(500 * time.Microsecond)
				}
				// Nothing follows the literal until the reader has all of it: a mark left
				// above what is still coming would hang here.
				<-gotLiteral
				s.Write([]byte("tail"))
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			tcp := raw.(*net.TCPConn)
			cc := &countingConn{TCPConn: tcp}
			c := &bufferedConn{Conn: cc}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))

			lit := &announcedReader{r: c, bc: c, left: int64(len(data))}
			got := make([]byte, 0, len(data))
			highest := 0
			p := make([]byte, 16<<10) // TLS asks for about a record at a time
			for len(got) < len(data) {
				n, err := lit.Read(p[:min(len(p), len(data)-len(got))])
				if err != nil {
					t.Fatalf("after %d bytes of %d: %v", len(got), len(data), err)
				}
				got = append(got, p[:n]...)
				highest = max(highest, rcvLowat(t, tcp))
			}
			close(gotLiteral)
			if !bytes.Equal(got, data) {
				t.Fatal("the bytes read differ from the bytes sent")
			}
			writes := (len(data) + chunk - 1) / chunk
			if mark := raisedMark(t); tc.raise && mark == 1 {
				if highest != 1 {
					t.Errorf("SO_RCVLOWAT raised to %d on a kernel where it is not used", highest)
				}
			} else if tc.raise {
				if highest != mark {
					t.Errorf("highest SO_RCVLOWAT while the literal streamed: %d, want %d", highest, mark)
				}
				// Each wake-up takes a mark's worth: a few reads per mark (the one that
				// empties the socket finds part of the next write) plus the literal's tail
				// read as it comes. Woken per write, the reads would be at least writes.
				if limit := writes / 2; cc.reads > limit {
					t.Errorf("%d socket reads for %d writes of %d bytes (at most %d expected with the mark)", cc.reads, writes, chunk, limit)
				}
			} else if highest > 1 {
				t.Errorf("SO_RCVLOWAT raised to %d for a literal of %d bytes", highest, len(data))
			}
			t.Logf("%d bytes in %d writes: %d socket reads", len(data), writes, cc.reads)
			tail, err := io.ReadAll(io.LimitReader(c, 4))
			if err != nil || string(tail) != "tail" {
				t.Fatalf("after the literal: %q, %v", tail, err)
			}
			if v := rcvLowat(t, tcp); v != 1 {
				t.Errorf("SO_RCVLOWAT after the literal: %d, want 1", v)
			}
		})
	}
}
