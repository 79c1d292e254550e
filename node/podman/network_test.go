//go:build remote && linux

package podman_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/dataplane"
)

// TestEnsureNetwork creates a pod network (dual stack where the host has
// IPv6), finds it again without creating it, and puts a pod on it: the
// pod's address is in the network's IPv4 subnet.
func TestEnsureNetwork(t *testing.T) {
	rt := startRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("capstan-test-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { _ = exec.Command("podman", "network", "rm", "-f", name).Run() })
	v6 := dataplane.HostHasIPv6()

	info, err := rt.EnsureNetwork(ctx, name, v6)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created || info.IPv6 != v6 || len(info.Subnets) != map[bool]int{true: 2, false: 1}[v6] {
		t.Fatalf("created network: %+v, want IPv6 %v", info, v6)
	}
	again, err := rt.EnsureNetwork(ctx, name, v6)
	if err != nil || again.Created || !slices.Equal(again.Subnets, info.Subnets) {
		t.Fatalf("second call: %+v, %v; want the same network, not created", again, err)
	}

	podName := name + "-pod"
	id, err := rt.CreatePod(ctx, node.PodConfig{Name: podName, Hostname: "p", Labels: map[string]string{"capstan.test": podName}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.RemovePod(context.Background(), id, 0) })
	var v4 netip.Prefix
	for _, s := range info.Subnets {
		if p := netip.MustParsePrefix(s); p.Addr().Is4() {
			v4 = p
		}
	}
	pods, err := rt.ListPods(ctx, map[string]string{"capstan.test": podName})
	if err != nil || len(pods) != 1 {
		t.Fatalf("list: %+v, %v", pods, err)
	}
	if ip, err := netip.ParseAddr(pods[0].IP); err != nil || !v4.Contains(ip) {
		t.Errorf("pod address %q is not in the network's IPv4 subnet %s", pods[0].IP, v4)
	}
}
