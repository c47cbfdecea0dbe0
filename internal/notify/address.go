// Package notify tells people things out of band: it delivers the lease
// manager's messages (lease.Teller) to the URLs people registered, and
// decides which URLs the gateway may reach at all.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Rules say which targets the gateway may reach. By default only https to
// public addresses: a person must not be able to make the gateway post to
// its own private network (cloud metadata, internal services).
type Rules struct {
	// AllowPrivate (--notify-allow-private) lets targets be anywhere and
	// plain http: for gateways whose people run their receivers inside.
	AllowPrivate bool
	// AllowLoopback lets targets be on loopback, over http too: local mode,
	// so notifications can be tried on one computer.
	AllowLoopback bool
}

// Resolver finds a name's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Target is a parsed notification URL.
type Target struct {
	URL  *url.URL // without the fragment, as it is posted to
	JSON bool     // the URL ended in #json: the body is a JSON object
}

// ParseTarget reads a notification URL as a person gives it, before any
// address is looked at.
func ParseTarget(raw string) (Target, error) {
	if len(raw) > lease.MaxNotifyURL {
		return Target{}, fmt.Errorf("the URL is %d characters long; at most %d are allowed", len(raw), lease.MaxNotifyURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return Target{}, errors.New("the URL has spaces or control characters in it")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, errors.New("that is not a URL; give one like https://ntfy.sh/your-topic")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Target{}, fmt.Errorf("the URL must start with https://, not %q", u.Scheme+":")
	}
	if u.Hostname() == "" {
		return Target{}, errors.New("the URL has no host; give one like https://ntfy.sh/your-topic")
	}
	t := Target{URL: u}
	switch u.Fragment {
	case "":
	case "json":
		t.JSON = true
	default:
		return Target{}, errors.New("the only fragment a URL may end in is #json (to be sent JSON)")
	}
	u.Fragment, u.RawFragment = "", ""
	return t, nil
}

// checkAddr says why the gateway must not reach ip over scheme, or nil.
func (r Rules) checkAddr(scheme string, ip netip.Addr) error {
	ip = ip.Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsMulticast(), ip.Is4() && ip.As4() == [4]byte{255, 255, 255, 255}:
		return fmt.Errorf("%s is not an address to send to", ip)
	case r.AllowPrivate:
		return nil
	case ip.IsLoopback() && r.AllowLoopback:
		return nil
	case !public(ip):
		return fmt.Errorf("%s is not a public address; the gateway only reaches public ones", ip)
	case scheme != "https":
		return errors.New("the URL must use https:// (plain http is allowed only to private targets the operator allows)")
	}
	return nil
}

// notPublic are ranges that are no public unicast address, beyond what
// netip's predicates (loopback, private, link-local) already tell.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, often a provider's own network
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: reaches IPv4, private ones included
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("2001::/32"),       // Teredo, which embeds an IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4, which embeds an IPv4 address
}

func public(ip netip.Addr) bool {
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// resolve returns the address to dial for host over scheme: every address
// the name has must be allowed (a name answering with one public and one
// private address is refused), and the first is the one dialled, so what
// was checked is what is reached.
func (r Rules) resolve(ctx context.Context, res Resolver, scheme, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ip, r.checkAddr(scheme, ip)
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("look up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("%s has no address", host)
	}
	for _, ip := range addrs {
		if err := r.checkAddr(scheme, ip); err != nil {
			return netip.Addr{}, fmt.Errorf("%s: %w", host, err)
		}
	}
	return addrs[0], nil
}

// dialer dials only addresses the rules allow, for one target's scheme,
// looking the name up itself: the address checked is the one connected
// to, whatever the name says a moment later (DNS rebinding).
func (r Rules) dialer(res Resolver, scheme string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ip, err := r.resolve(ctx, res, scheme, host)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	}
}
