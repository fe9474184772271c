package smtpsend

import (
	"net"
	"sync/atomic"
	"time"
)

// wireConn is the TCP connection under everything (TLS included). go-smtp sets a deadline for
// each command but none while the message is written, so wireConn gives each write of the
// message a deadline of its own (writeIdle): a server that stops reading cannot hold a send,
// and a slow but moving transfer of a large message is not cut.
//
// It also tells the two ends of the final dot apart. go-smtp writes the rest of the message and
// the final dot, and only then reads the reply: a read after closing began means the dot was
// handed to the kernel (a failure from then on is Unknown), while a failed write with no read
// means it never left (Temporary).
type wireConn struct {
	net.Conn
	writeIdle    atomic.Int64 // nanoseconds; > 0 while the message is written
	closing      atomic.Bool  // the final dot is being written, then its reply read
	writeFailed  atomic.Bool  // a write failed while closing
	readAfterDot atomic.Bool  // a read happened while closing
}

func (c *wireConn) Write(p []byte) (int, error) {
	if d := c.writeIdle.Load(); d > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Duration(d)))
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.closing.Load() {
		c.writeFailed.Store(true)
	}
	return n, err
}

func (c *wireConn) Read(p []byte) (int, error) {
	if c.closing.Load() {
		c.readAfterDot.Store(true)
	}
	return c.Conn.Read(p)
}

// startData arms the per-write deadline for the message.
func (c *wireConn) startData(idle time.Duration) {
	c.closing.Store(false)
	c.writeFailed.Store(false)
	c.readAfterDot.Store(false)
	c.writeIdle.Store(int64(idle))
}

// startClosing marks that what is written from now on ends with the final dot.
func (c *wireConn) startClosing() { c.closing.Store(true) }

// dotMayHaveArrived reports whether the final dot may have reached the server: false only when
// a write failed while closing and the reply was never read.
func (c *wireConn) dotMayHaveArrived() bool {
	return c.readAfterDot.Load() || !c.writeFailed.Load()
}

// endData disarms the per-write deadline.
func (c *wireConn) endData() {
	c.writeIdle.Store(0)
	c.closing.Store(false)
}

// replayConn hands go-smtp the bytes already read from the connection (the greeting, read here
// to report it as a step, and for STARTTLS to upgrade before go-smtp starts) before the rest.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
