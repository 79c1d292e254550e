package dataplane

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/capstan-io/capstan/internal/testwait"
)

// requireRoot skips a test that needs CAP_NET_ADMIN, or fails it when
// CAPSTAN_REQUIRE_PODMAN=1 (the machines that run the end-to-end suite).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CAPSTAN_REQUIRE_PODMAN") == "1" {
		t.Fatal("this test needs root (CAPSTAN_REQUIRE_PODMAN=1)")
	}
	t.Skip("needs root to create interfaces; run as root or set CAPSTAN_REQUIRE_PODMAN=1 to fail instead")
}

func linkAddrs(t *testing.T, name string) []netip.Addr {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range list {
		ip, _ := netip.AddrFromSlice(a.IP)
		out = append(out, ip.Unmap())
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out
}

func TestInterfaceHoldsAddresses(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("cst%04x", rand.IntN(0x10000))
	third := byte(rand.IntN(250))
	prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 254, third, 0}), 24)
	at := func(last byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 254, third, last}) }
	i := &Interface{Name: name, Owned: []netip.Prefix{prefix}}
	t.Cleanup(func() {
		if err := i.Delete(); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	})
	ctx := context.Background()

	// Created on first use, holding what is wanted in its prefix only.
	if err := i.Sync(ctx, []netip.Addr{at(1), at(2), netip.MustParseAddr("10.253.0.1")}); err != nil {
		t.Fatal(err)
	}
	if got, want := linkAddrs(t, name), []netip.Addr{at(1), at(2)}; !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s is a %s link", name, link.Type())
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("link is not up")
	}

	// An address held is local: a listener on it answers.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(at(1), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The kernel installs the address's local route asynchronously: it
	// must become reachable, not at the very first packet.
	testwait.For(t, 15*time.Second, "dial "+ln.Addr().String(), func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	ln.Close()

	// An address not owned is never touched; owned ones not wanted go.
	other := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 253, third, 9), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(link, other); err != nil {
		t.Fatal(err)
	}
	if err := i.Sync(ctx, []netip.Addr{at(2), at(3)}); err != nil {
		t.Fatal(err)
	}
	if got, want := linkAddrs(t, name), []netip.Addr{netip.AddrFrom4([4]byte{10, 253, third, 9}), at(2), at(3)}; !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	// Idempotent.
	if err := i.Sync(ctx, []netip.Addr{at(2), at(3)}); err != nil {
		t.Fatal(err)
	}
	if err := i.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := linkAddrs(t, name), []netip.Addr{netip.AddrFrom4([4]byte{10, 253, third, 9})}; !slices.Equal(got, want) {
		t.Fatalf("addresses after releasing all %v, want %v", got, want)
	}
}

func TestInterfaceHoldsIPv6Addresses(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		t.Skip("no IPv6 on this host")
	}
	name := fmt.Sprintf("cst%04x", rand.IntN(0x10000))
	prefix := netip.MustParsePrefix(fmt.Sprintf("fd00:96:%x::/112", rand.IntN(0x10000)))
	a := prefix.Addr().Next()
	i := &Interface{Name: name, Owned: []netip.Prefix{prefix}}
	t.Cleanup(func() { _ = i.Delete() })
	if err := i.Sync(context.Background(), []netip.Addr{a}); err != nil {
		t.Fatal(err)
	}
	// Held without duplicate address detection: usable at once.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		t.Fatalf("listen on %s: %v", a, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The kernel installs the address's local route asynchronously: it
	// must become reachable, not at the very first packet.
	testwait.For(t, 15*time.Second, "dial "+ln.Addr().String(), func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err := i.Sync(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
