package imapconn

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// Bytes come through the buffered connection unchanged whatever the read sizes, and a
// connection waiting for data holds no read buffer.
func TestBufferedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := testutil.RandomBytes(3<<20+1234, 5)
	rng := rand.New(rand.NewPCG(5, 6))
	more := make(chan struct{})
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		s.Write(data)
		<-more
		s.Write([]byte("tail"))
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &bufferedConn{Conn: raw}
	defer c.Close()
	got := make([]byte, 0, len(data))
	for len(got) < len(data) {
		p := make([]byte, []int{1, 100, 17 << 10, 64 << 10, 300 << 10}[rng.IntN(5)])
		n, err := c.Read(p[:min(len(p), len(data)-len(got))])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes read differ from the bytes sent")
	}
	// Everything is read: the next read waits for data, without a buffer.
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(c, 4))
		done <- b
	}()
	time.Sleep(100 * time.Millisecond)
	if n := borrowedBuffers.Load(); n != 0 {
		t.Errorf("%d read buffers held by a connection waiting for data", n)
	}
	close(more)
	if b := <-done; string(b) != "tail" {
		t.Errorf("after the wait: %q", b)
	}
}

// randomBytes returns n bytes from a generator seeded with seed.

// The write deadline is held by the connection and applied to writes only, with the meaning
// of a socket's: a passed deadline fails the next write, one cleared lets it through, one set
// or passing while a write is blocked ends that write.
func TestBufferedConnWriteDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := ln.Accept()
		if err == nil {
			accepted <- s // never read: writes block once the socket buffers are full
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()
	c := &bufferedConn{Conn: raw}
	defer c.Close()

	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after a passed deadline: %v", err)
	}
	c.SetWriteDeadline(time.Time{})
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write with the deadline cleared: %v", err)
	}
	big := make([]byte, 64<<20)
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	if _, err := c.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a blocked write past its deadline: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the blocked write ended after %s", d)
	}
	// A deadline set while a write is blocked applies to it.
	c.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a write blocked when its deadline was set: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set during a blocked write did not end it")
	}
}
