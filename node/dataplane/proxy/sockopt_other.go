//go:build !linux

package proxy

import "syscall"

// Freebind does nothing outside Linux.
func Freebind(string, string, syscall.RawConn) error { return nil }
