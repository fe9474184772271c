package imapconn

import (
	"net"
	"sync"
	"sync/atomic"
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
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if c.err != nil {
			err := c.err
			c.err = nil
			return 0, err
		}
		if !c.streaming || len(p) >= readBufferSize {
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
