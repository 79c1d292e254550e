package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Freebind is a net.ListenConfig Control function that lets a socket bind
// an address that is not (yet) on an interface, so a listener does not
// depend on the order in which its address and itself appear.
func Freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		switch network {
		case "tcp6", "udp6":
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		default:
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
