package imapconn

import (
	"errors"
	"net"
	"syscall"
)

// setRcvLowat sets SO_RCVLOWAT on a TCP connection: a read that finds the socket empty waits
// until n bytes are queued (or the connection ends). A connection that is not a socket (a
// test's pipe) returns an error.
func setRcvLowat(conn net.Conn, n int) error {
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
