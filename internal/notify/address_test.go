package notify

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	public := Rules{}
	local := Rules{AllowLoopback: true}
	private := Rules{AllowPrivate: true}
	for _, tc := range []struct {
		addr   string
		scheme string
		rules  Rules
		refuse string // part of the refusal, "" when allowed
	}{
		{"93.184.216.34", "https", public, ""},
		{"2606:2800:220:1:248:1893:25c8:1946", "https", public, ""},
		{"93.184.216.34", "http", public, "must use https"},
		{"10.1.2.3", "https", public, "not a public address"},
		{"172.16.0.1", "https", public, "not a public address"},
		{"172.31.255.254", "https", public, "not a public address"},
		{"192.168.1.1", "https", public, "not a public address"},
		{"100.64.0.1", "https", public, "not a public address"},
		{"100.127.255.254", "https", public, "not a public address"},
		{"169.254.169.254", "https", public, "not a public address"}, // cloud metadata
		{"169.254.1.1", "https", public, "not a public address"},
		{"127.0.0.1", "https", public, "not a public address"},
		{"127.8.9.10", "http", public, "not a public address"},
		{"::1", "https", public, "not a public address"},
		{"fc00::1", "https", public, "not a public address"},
		{"fd12:3456::1", "https", public, "not a public address"},
		{"fe80::1", "https", public, "not a public address"},
		{"::ffff:10.0.0.1", "https", public, "not a public address"},
		{"::ffff:169.254.169.254", "https", public, "not a public address"},
		{"::ffff:127.0.0.1", "https", public, "not a public address"},
		{"64:ff9b::a00:1", "https", public, "not a public address"}, // NAT64 of 10.0.0.1
		{"2002:a00:1::1", "https", public, "not a public address"},  // 6to4 of 10.0.0.1
		{"0.0.0.0", "https", public, "not an address to send to"},
		{"0.1.2.3", "https", public, "not a public address"},
		{"::", "https", public, "not an address to send to"},
		{"224.0.0.1", "https", public, "not an address to send to"},
		{"255.255.255.255", "https", public, "not an address to send to"},
		{"240.0.0.1", "https", public, "not a public address"},
		// Local mode: loopback, over http too; nothing else private.
		{"127.0.0.1", "http", local, ""},
		{"127.0.0.53", "https", local, ""},
		{"::1", "http", local, ""},
		{"::ffff:127.0.0.1", "http", local, ""},
		{"10.0.0.1", "http", local, "not a public address"},
		{"169.254.169.254", "http", local, "not a public address"},
		{"93.184.216.34", "http", local, "must use https"},
		{"0.0.0.0", "http", local, "not an address to send to"},
		// --notify-allow-private: anywhere, over http too, but never to
		// what is no address.
		{"10.0.0.1", "http", private, ""},
		{"169.254.169.254", "http", private, ""},
		{"fe80::1", "https", private, ""},
		{"93.184.216.34", "http", private, ""},
		{"0.0.0.0", "http", private, "not an address to send to"},
		{"ff02::1", "http", private, "not an address to send to"},
	} {
		err := tc.rules.checkAddr(tc.scheme, netip.MustParseAddr(tc.addr))
		switch {
		case tc.refuse == "" && err != nil:
			t.Errorf("%s %s with %+v: refused: %v", tc.scheme, tc.addr, tc.rules, err)
		case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
			t.Errorf("%s %s with %+v: got %v, want a refusal saying %q", tc.scheme, tc.addr, tc.rules, err, tc.refuse)
		}
	}
}

// fakeResolver answers names from a map; each lookup takes the next answer
// of its name, so a name can change its answer between two lookups.
type fakeResolver map[string][][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	answers := f[host]
	if len(answers) == 0 {
		return nil, errors.New("no such host")
	}
	if len(answers) > 1 {
		f[host] = answers[1:]
	}
	return answers[0], nil
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestResolveChecksEveryAddressOfAName(t *testing.T) {
	res := fakeResolver{
		"public.test":   {addrs("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")},
		"internal.test": {addrs("10.0.0.7")},
		"metadata.test": {addrs("169.254.169.254")},
		"mixed.test":    {addrs("93.184.216.34", "192.168.0.1")},
		"mapped.test":   {addrs("::ffff:172.16.5.4")},
		"loop.test":     {addrs("127.0.0.1")},
	}
	for host, refuse := range map[string]string{
		"public.test":   "",
		"internal.test": "10.0.0.7 is not a public address",
		"metadata.test": "169.254.169.254 is not a public address",
		"mixed.test":    "192.168.0.1 is not a public address",
		"mapped.test":   "is not a public address",
		"loop.test":     "127.0.0.1 is not a public address",
		"unknown.test":  "look up unknown.test",
		"[::1]":         "::1 is not a public address",
		"10.9.8.7":      "10.9.8.7 is not a public address",
	} {
		ip, err := Rules{}.resolve(context.Background(), res, "https", host)
		switch {
		case refuse == "" && (err != nil || ip != netip.MustParseAddr("93.184.216.34")):
			t.Errorf("%s: got %v, %v; want its first address", host, ip, err)
		case refuse != "" && (err == nil || !strings.Contains(err.Error(), refuse)):
			t.Errorf("%s: got %v, %v; want a refusal saying %q", host, ip, err, refuse)
		}
	}
}

func TestParseTarget(t *testing.T) {
	long := "https://ntfy.sh/" + strings.Repeat("a", 600)
	for raw, refuse := range map[string]string{
		"https://ntfy.sh/topic":            "",
		"https://ntfy.sh/topic#json":       "",
		"http://127.0.0.1:8080/hook?x=1":   "", // the address is the rules' business
		"ftp://ntfy.sh/topic":              `must start with https://, not "ftp:"`,
		"ntfy.sh/topic":                    `must start with https://, not ":"`,
		"https:///topic":                   "has no host",
		"https://ntfy.sh/topic#xml":        "only fragment",
		"https://ntfy.sh/to pic":           "spaces or control characters",
		"https://ntfy.sh/topic\n":          "spaces or control characters",
		"https://ntfy.sh/%zz":              "not a URL",
		long:                               "at most 512 are allowed",
		"file:///etc/passwd":               `not "file:"`,
		"https://user:pass@ntfy.sh/topic":  "",
		"javascript:alert(1)":              `not "javascript:"`,
		"https://[::1]:443/topic#json":     "",
		"https://ntfy.sh/topic#json#other": "only fragment",
	} {
		target, err := ParseTarget(raw)
		switch {
		case refuse == "" && err != nil:
			t.Errorf("%q: refused: %v", raw, err)
		case refuse != "" && (err == nil || !strings.Contains(err.Error(), refuse)):
			t.Errorf("%q: got %v, want a refusal saying %q", raw, err, refuse)
		case err == nil && target.JSON != strings.HasSuffix(raw, "#json"):
			t.Errorf("%q: JSON = %v", raw, target.JSON)
		case err == nil && strings.Contains(target.URL.String(), "#"):
			t.Errorf("%q: posts to %s, with its fragment", raw, target.URL)
		}
	}
}
