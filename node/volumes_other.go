//go:build !linux

package node

import "errors"

func mountTmpfs(dir string, size int64) error {
	return errors.New("tmpfs mounts need Linux")
}

func unmount(dir string) error { return errors.New("unmount needs Linux") }

func isMountPoint(dir string) bool { return false }
