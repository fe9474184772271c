package imapconn

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// Bytes come through the buffered connection unchanged whatever the read sizes, and a
// connection waiting for data holds no read buffer.
func TestBufferedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := make([]byte, 3<<20+1234)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
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
