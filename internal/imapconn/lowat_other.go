//go:build !linux

package imapconn

import (
	"errors"
	"net"
)

// setRcvLowat is not used outside Linux, where a receive low-water mark may not wake a poller
// the same way: the connection reads as data arrives.
func setRcvLowat(net.Conn, int) error { return errors.New("SO_RCVLOWAT is used on Linux only") }
