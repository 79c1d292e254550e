//go:build remote

package podman

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/capstan-io/capstan/node"
)

// TestReadCgroup reads live settings from cgroup v1 and v2 file trees as
// the kernel lays them out.
func TestReadCgroup(t *testing.T) {
	t.Parallel()
	write := func(root, rel, value string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const path = "/libpod_parent/libpod-abc"

	v1 := t.TempDir()
	write(v1, "freezer"+path+"/freezer.state", "FROZEN")
	write(v1, "memory"+path+"/memory.limit_in_bytes", "134217728")
	write(v1, "cpu,cpuacct"+path+"/cpu.cfs_quota_us", "50000")
	write(v1, "cpu,cpuacct"+path+"/cpu.cfs_period_us", "100000")
	got, err := readCgroup(v1, path)
	if err != nil || got != (node.LiveContainer{Paused: true, MemoryLimit: 128 << 20, CPULimitMilli: 500}) {
		t.Fatalf("v1: %+v, %v", got, err)
	}
	write(v1, "freezer"+path+"/freezer.state", "THAWED")
	write(v1, "memory"+path+"/memory.limit_in_bytes", "9223372036854771712") // none
	write(v1, "cpu"+path+"/cpu.cfs_quota_us", "-1")
	write(v1, "cpu"+path+"/cpu.cfs_period_us", "100000")
	if got, err = readCgroup(v1, path); err != nil || got != (node.LiveContainer{}) {
		t.Fatalf("v1 without limits: %+v, %v", got, err)
	}

	v2 := t.TempDir()
	write(v2, "cgroup.controllers", "cpu memory")
	write(v2, path+"/cgroup.freeze", "0")
	write(v2, path+"/memory.max", "67108864")
	write(v2, path+"/cpu.max", "25000 100000")
	if got, err = readCgroup(v2, path); err != nil || got != (node.LiveContainer{MemoryLimit: 64 << 20, CPULimitMilli: 250}) {
		t.Fatalf("v2: %+v, %v", got, err)
	}
	write(v2, path+"/cgroup.freeze", "1")
	write(v2, path+"/memory.max", "max")
	write(v2, path+"/cpu.max", "max 100000")
	if got, err = readCgroup(v2, path); err != nil || got != (node.LiveContainer{Paused: true}) {
		t.Fatalf("v2 paused, no limits: %+v, %v", got, err)
	}
	if _, err := readCgroup(v2, "/gone"); err == nil {
		t.Fatal("a missing cgroup read without error")
	}
	write(v2, path+"/memory.max", "lots")
	if _, err := readCgroup(v2, path); err == nil {
		t.Fatal("a bad memory limit read without error")
	}
}
