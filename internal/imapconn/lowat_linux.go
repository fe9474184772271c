package imapconn

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// setRcvLowat sets SO_RCVLOWAT on a TCP connection: a read that finds the socket empty waits
// until n bytes are queued (or the connection ends). A connection that is not a socket (a
// test's pipe) returns an error, and so does a kernel older than 5.10 asked for more than a
// byte: before it, a mark could stall a reader for good (the receive buffer was not grown to
// hold it before 4.18, a reader under memory pressure was not woken before 5.7, nor one whose
// queue held few large buffers before 5.10). Since then the kernel caps the mark at half the
// largest receive buffer and wakes the reader when the window closes.
func setRcvLowat(conn net.Conn, n int) error {
	if n > 1 && !lowWaterKernel() {
		return errors.New("SO_RCVLOWAT is used on Linux 5.10 and later")
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

// lowWaterKernel reports whether the running kernel is 5.10 or later.
var lowWaterKernel = sync.OnceValue(func() bool {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return false
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return kernelAtLeast(b.String(), 5, 10)
})

// kernelAtLeast reports whether a kernel release ("6.1.0-27-amd64", "5.10-rc1") is
// major.minor or later.
func kernelAtLeast(release string, major, minor int) bool {
	ma, rest, ok := leadingInt(release)
	if !ok || !strings.HasPrefix(rest, ".") {
		return false
	}
	mi, _, ok := leadingInt(rest[1:])
	if !ok {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// leadingInt returns the number s begins with and what follows it.
func leadingInt(s string) (int, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	return n, s[i:], err == nil
}
