package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Interface holds the data plane's addresses on a local link, through
// netlink. The link is a dummy interface, created (and set up) when
// missing; on a kernel without the dummy driver (some VM kernels) it is an
// IFB device, else a bridge with no ports: each holds local addresses the
// same way. An existing link of that name is used whatever its type. It is
// safe for concurrent use.
type Interface struct {
	Name string // "capstan0"
	// Owned are the prefixes whose addresses on the link belong to the
	// data plane: Sync removes those it does not want, and never touches
	// any other address.
	Owned []netip.Prefix
	Log   *slog.Logger

	mu sync.Mutex
}

var _ AddressSyncer = (*Interface)(nil)

// Sync makes the owned addresses on the link exactly want (each as a
// host address, /32 or /128). Addresses in want outside Owned are not
// added. With want empty it removes every owned address but keeps the
// link.
func (i *Interface) Sync(_ context.Context, want []netip.Addr) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	log := i.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	link, err := i.link(len(want) > 0, log)
	if err != nil || link == nil {
		return err
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", i.Name, err)
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		if i.owned(a) {
			wanted[a.Unmap()] = true
		}
	}
	var errs []error
	present := map[netip.Addr]bool{}
	for _, h := range have {
		a, ok := netip.AddrFromSlice(h.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		present[a] = true
		if i.owned(a) && !wanted[a] {
			if err := netlink.AddrDel(link, &h); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove %s from %s: %w", a, i.Name, err))
			} else {
				log.Debug("address removed", "interface", i.Name, "addr", a)
			}
		}
	}
	for a := range wanted {
		if present[a] {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", a, i.Name, err))
		} else {
			log.Debug("address added", "interface", i.Name, "addr", a)
		}
	}
	return errors.Join(errs...)
}

func (i *Interface) owned(a netip.Addr) bool {
	for _, p := range i.Owned {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// link returns the link, creating it if create is set; nil if it does not
// exist and create is not set.
func (i *Interface) link(create bool, log *slog.Logger) (netlink.Link, error) {
	link, err := netlink.LinkByName(i.Name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		if !create {
			return nil, nil
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = i.Name
		err = netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if unsupported(err) {
			// No dummy driver in this kernel: an IFB device is as quiet
			// (nothing is routed to it but its local addresses) and, up,
			// has a carrier, which IPv6 needs before it installs an
			// address's local route.
			log.Info("no dummy interfaces in this kernel; using an IFB device", "interface", i.Name, "err", err)
			err = netlink.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
		}
		if unsupported(err) {
			// A bridge with no ports holds IPv4 addresses just as well
			// (IPv6 ones wait for a carrier it never has).
			log.Info("no IFB devices either; using a bridge with no ports (IPv4 only)", "interface", i.Name, "err", err)
			err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create interface %s: %w", i.Name, err)
		}
		log.Info("interface created", "interface", i.Name)
		link, err = netlink.LinkByName(i.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", i.Name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", i.Name, err)
		}
	}
	return link, nil
}

// unsupported reports whether LinkAdd failed for want of the link type.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL)
}

// Delete removes the link (tests).
func (i *Interface) Delete() error {
	link, err := netlink.LinkByName(i.Name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(link)
}
