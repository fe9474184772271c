package imapconn

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// readBufferSize is how much one read from the socket may take while a fetch streams.
const readBufferSize = 256 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// borrowedBuffers counts the read buffers connections hold now.
var borrowedBuffers atomic.Int64

// bufferedConn reads the socket in large reads while data streams. TLS reads a record at a
// time (at most 16 KB), one system call each, which was a tenth of the CPU of a large fetch.
// The buffer is borrowed from a pool only while reads keep finding more data than asked for,
// and given back as soon as it is read out: a connection waiting for data (IDLE) reads
// directly and holds none, so thousands of idle sessions cost nothing more, which a
// bufio.Reader (a buffer for the connection's life) would not give.
type bufferedConn struct {
	net.Conn
	buf       *[]byte
	r, w      int
	err       error // a read error that came with data, returned once the data is read
	streaming bool  // the last read filled its buffer: more is probably waiting
	// closed, when set, is called after each Close (Conn.Notify learns so of the end).
	closed func()

	// expected is how many bytes of the literal being read are unread (see expect), lowat
	// the socket's receive low-water mark now (0: the system's default, a byte).
	expected atomic.Int64
	lowat    int

	// The write deadline is held here and set on the socket only while a Write runs (see
	// SetWriteDeadline).
	wmu       sync.Mutex
	wdeadline time.Time
	writers   int
}

// SetWriteDeadline keeps the deadline for the writes to come (and applies it to those under
// way). imapclient sets a 30-second write deadline when it begins a command and clears it when
// the command ends, which for IDLE is at DONE: on the socket, that armed a runtime timer per
// idling connection that fired half a minute after each IDLE began, waking the process for
// nothing thousands of times after every burst of mail. Held here, a deadline only bounds the
// writes, as it is meant to.
func (c *bufferedConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wdeadline = t
	if c.writers > 0 {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

// SetDeadline sets the read deadline on the socket and keeps the write deadline.
func (c *bufferedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Write writes under the write deadline, which is then taken off the socket again.
func (c *bufferedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.writers++
	set := !c.wdeadline.IsZero()
	if set {
		c.Conn.SetWriteDeadline(c.wdeadline)
	}
	c.wmu.Unlock()
	n, err := c.Conn.Write(p)
	c.wmu.Lock()
	c.writers--
	if c.writers == 0 && (set || !c.wdeadline.IsZero()) {
		c.Conn.SetWriteDeadline(time.Time{})
	}
	c.wmu.Unlock()
	return n, err
}

// Close closes the connection and tells closed.
func (c *bufferedConn) Close() error {
	err := c.Conn.Close()
	if c.closed != nil {
		c.closed()
	}
	return err
}

// Low water: while a large literal streams and is read faster than the server sends it,
// each TLS record woke the reader for one short read (and an empty one, and a wait in the
// poller): on a machine whose system calls are dear (a virtual machine with page-table
// isolation) that was a fifth of the server's CPU per message. With the socket's receive
// low-water mark (SO_RCVLOWAT) raised, the kernel wakes a reader that found the socket empty
// only once lowWaterMark bytes are queued, which one large read then takes (a read that finds
// bytes queued still returns them at once). The mark is raised only while at least
// lowWaterMark+lowWaterMargin bytes of a literal were unread when its reader last asked for
// more, so it can always be reached: the socket is read only once the layers above it are
// empty but for part of one TLS record (imapclient's 4 KB buffer and TLS's decrypted record
// are read out first), far less than the margin. The literal's last bytes, the responses
// after it and an idle connection are read with the mark at a byte, as before; so is every
// read on a kernel without the fixes that make the mark safe (see setRcvLowat). Whoever
// announces a literal (expect) clears the announcement when done with it, however it ends.
const (
	lowWaterMark   = 128 << 10
	lowWaterMargin = 128 << 10
)

// expect tells the connection that n bytes of a literal are unread by its reader (the socket
// still holds all but what the layers above it hold of them), or that no literal is being
// read (0). c may be nil.
func (c *bufferedConn) expect(n int64) {
	if c != nil {
		c.expected.Store(n)
	}
}

// setLowWater sets the socket's receive low-water mark for the next read from what is expected.
// A socket that does not take it is read as before.
func (c *bufferedConn) setLowWater() {
	want := 0
	if c.expected.Load() >= lowWaterMark+lowWaterMargin {
		want = lowWaterMark
	}
	if want == c.lowat {
		return
	}
	if err := setRcvLowat(c.Conn, max(want, 1)); err != nil {
		return
	}
	c.lowat = want
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		c.setLowWater()
		if (!c.streaming && c.lowat == 0) || len(p) >= readBufferSize {
			n, err := c.Conn.Read(p)
			c.streaming = n > 0 && n == len(p)
			return n, err
		}
		b := readBuffers.Get().(*[]byte)
		borrowedBuffers.Add(1)
		n, err := c.Conn.Read(*b)
		c.streaming = n == len(*b)
		if n == 0 {
			c.release(b)
			return 0, err
		}
		c.buf, c.r, c.w, c.err = b, 0, n, err
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release(c.buf)
		c.buf = nil
	}
	return n, nil
}

func (c *bufferedConn) release(b *[]byte) {
	borrowedBuffers.Add(-1)
	readBuffers.Put(b)
}
