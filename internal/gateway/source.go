package gateway

import (
	"net"
	"net/netip"
)

// sourceOf names where a connection comes from, for the startup limits and
// the refusal counts: the client's IPv4 address, or the /64 network of its
// IPv6 address, since one IPv6 host commonly holds a whole /64.
func sourceOf(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return addr.String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
}
