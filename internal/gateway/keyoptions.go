package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"charm.land/ssh"
)

// Permit is what a key's allow-list line lets its connections do besides
// running programs on the person's machine and the gateway's commands.
type Permit struct {
	PortForwarding  bool // ssh -L, -R, -W
	AgentForwarding bool // ssh -A
	PTY             bool // a terminal (ssh -t, and interactive logins)
}

// permitAll is a line without restricting options, and open access.
var permitAll = Permit{PortForwarding: true, AgentForwarding: true, PTY: true}

// allows reports whether p lets a session make a request of this type; it
// only refuses the requests an option can take away.
func (p Permit) allows(reqType string) bool {
	switch reqType {
	case "pty-req":
		return p.PTY
	case agentRequest:
		return p.AgentForwarding
	}
	return true
}

// keyOptions is what the options of one allow-list line say, as sshd reads
// them in authorized_keys.
type keyOptions struct {
	from    []hostPattern // nil: from any address
	expires time.Time     // zero: never
	permit  Permit
}

// parseKeyOptions reads the options ParseAuthorizedKey split off a line, in
// order (`restrict,pty` permits a terminal, `pty,restrict` does not). An
// option the gateway does not enforce is an error: the line would grant
// more than it says. Expiry times without a trailing Z are in loc, as sshd
// reads them in the system's time zone.
func parseKeyOptions(options []string, loc *time.Location) (keyOptions, error) {
	o := keyOptions{permit: permitAll}
	seenFrom := false
	for _, opt := range options {
		name, value, hasValue := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if hasValue && name != "from" && name != "expiry-time" {
			return o, fmt.Errorf("option %q is not one the gateway enforces", clip(opt))
		}
		switch name {
		case "restrict":
			o.permit = Permit{}
		case "no-port-forwarding", "port-forwarding":
			o.permit.PortForwarding = name == "port-forwarding"
		case "no-agent-forwarding", "agent-forwarding":
			o.permit.AgentForwarding = name == "agent-forwarding"
		case "no-pty", "pty":
			o.permit.PTY = name == "pty"
		case "no-x11-forwarding":
			// The gateway never forwards X11.
		case "from":
			if seenFrom {
				return o, errors.New(`more than one from= option`)
			}
			seenFrom = true
			list, err := unquote(value)
			if err != nil {
				return o, fmt.Errorf("from=: %w", err)
			}
			if o.from, err = parseHostPatterns(list); err != nil {
				return o, fmt.Errorf("from=: %w", err)
			}
		case "expiry-time":
			s, err := unquote(value)
			if err != nil {
				return o, fmt.Errorf("expiry-time=: %w", err)
			}
			t, err := parseExpiryTime(s, loc)
			if err != nil {
				return o, fmt.Errorf("expiry-time=: %w", err)
			}
			// As sshd: of several, the earliest holds.
			if o.expires.IsZero() || t.Before(o.expires) {
				o.expires = t
			}
		default:
			return o, fmt.Errorf("option %q is not one the gateway enforces", clip(opt))
		}
	}
	return o, nil
}

// clip shortens what a log line quotes from a file.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// unquote reads an option's value: double quotes around it, \" inside.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("the value must be in double quotes")
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), nil
}

// parseExpiryTime reads YYYYMMDD[HHMM[SS]], with a trailing Z for UTC.
func parseExpiryTime(s string, loc *time.Location) (time.Time, error) {
	if rest, ok := strings.CutSuffix(s, "Z"); ok {
		s, loc = rest, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(s)]
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", clip(s))
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", clip(s))
	}
	return t, nil
}

// hostPattern is one entry of a from= list: an address or network, or a
// pattern with * and ?, maybe negated with !.
type hostPattern struct {
	negated bool
	network netip.Prefix // valid for an address or a network
	glob    string       // otherwise
}

// parseHostPatterns reads a from= list. The gateway does not resolve
// addresses to names, so a host name could never match; it is refused
// rather than silently ignored, since a negated name (!*.example.com)
// would then keep nobody out.
func parseHostPatterns(list string) ([]hostPattern, error) {
	var out []hostPattern
	for entry := range strings.SplitSeq(list, ",") {
		p := hostPattern{}
		entry, p.negated = strings.CutPrefix(entry, "!")
		switch {
		case entry == "":
			return nil, errors.New("an empty pattern")
		case strings.Contains(entry, "/"):
			network, err := netip.ParsePrefix(entry)
			if err != nil || network != network.Masked() {
				return nil, fmt.Errorf("%q is not a network (address/bits, with no bits set past the mask)", clip(entry))
			}
			p.network = network
		default:
			if addr, err := netip.ParseAddr(entry); err == nil && addr.Zone() == "" {
				p.network = netip.PrefixFrom(addr, addr.BitLen())
				break
			}
			if strings.Trim(entry, "0123456789abcdefABCDEF.:*?") != "" {
				return nil, fmt.Errorf("%q is a host name; the gateway matches addresses only (use an address, a network, or * and ?)", clip(entry))
			}
			p.glob = strings.ToLower(entry)
		}
		out = append(out, p)
	}
	return out, nil
}

// matchFrom reports whether addr is let in by patterns, as sshd does: a
// negated entry that matches keeps it out, whatever else matches.
func matchFrom(patterns []hostPattern, addr netip.Addr) bool {
	addr = addr.Unmap()
	text := addr.String()
	matched := false
	for _, p := range patterns {
		hit := p.network.IsValid() && p.network.Contains(addr) || !p.network.IsValid() && matchGlob(p.glob, text)
		if hit && p.negated {
			return false
		}
		matched = matched || hit
	}
	return matched
}

// matchGlob matches s against a pattern of * (any run) and ? (one
// character), in time linear in their lengths' product: on a mismatch it
// only moves the last * on by one.
func matchGlob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// admits reports why o does not let a connection from remote in at now, or
// nil when it does.
func (o keyOptions) admits(remote net.Addr, now time.Time) error {
	if !o.expires.IsZero() && now.After(o.expires) {
		return fmt.Errorf("its allow-list line expired at %s", o.expires.Format(time.RFC3339))
	}
	if o.from == nil {
		return nil
	}
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("its allow-list line has from= and %v is not an IP address", remote)
	}
	addr, ok := netip.AddrFromSlice(tcp.IP)
	if !ok || !matchFrom(o.from, addr) {
		return fmt.Errorf("its allow-list line's from= does not admit %s", tcp.IP)
	}
	return nil
}

// The permit of the key a connection authenticated with travels in the
// connection's ssh.Permissions, which x/crypto keeps per key offered: a
// value set in the context during authentication would belong to whichever
// key was asked about last, not necessarily the one that signed.
const (
	extPortForwarding  = "permit-port-forwarding"
	extAgentForwarding = "permit-agent-forwarding"
	extPTY             = "permit-pty"
)

// setPermit records p in the permissions of the key being authenticated.
func setPermit(ctx ssh.Context, p Permit) {
	perms := ctx.Permissions()
	if perms.Extensions == nil {
		perms.Extensions = map[string]string{}
	}
	for ext, ok := range map[string]bool{extPortForwarding: p.PortForwarding, extAgentForwarding: p.AgentForwarding, extPTY: p.PTY} {
		if ok {
			perms.Extensions[ext] = ""
		}
	}
}

// permitOf is the permit of the key ctx's connection authenticated with;
// nothing is permitted when it is missing.
func permitOf(ctx ssh.Context) Permit {
	perms := ctx.Permissions()
	if perms == nil || perms.Permissions == nil {
		return Permit{}
	}
	has := func(ext string) bool { _, ok := perms.Extensions[ext]; return ok }
	return Permit{PortForwarding: has(extPortForwarding), AgentForwarding: has(extAgentForwarding), PTY: has(extPTY)}
}
