package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fuzzPath names the config file in messages.
const fuzzPath = "gw.conf"

// problemLine reads which line of the file a problem names: a problem with
// a line is "gw.conf:N: ..." and one with a value from it is
// "--name (from gw.conf:N): ...".
var problemLine = regexp.MustCompile(`^(?:--([a-z0-9-]+) \(from ` + regexp.QuoteMeta(fuzzPath) + `:(\d+)\)|` + regexp.QuoteMeta(fuzzPath) + `:(\d+)): `)

// FuzzConfigFile feeds the config file reader arbitrary files. Each
// non-blank, non-comment line must either set its option, to a value that
// prints and reads back as itself, or give exactly the problem the package
// documents for it, naming its line. Nothing else may be reported.
//
// The seeds run with go test; fuzz longer with
//
//	go test -run '^$' -fuzz FuzzConfigFile -fuzztime 1m ./internal/config/
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"# /etc/cc-gateway/gateway.conf\nusers        = /etc/cc-gateway/users\nidle-timeout = 45m\n",
		"# comment\r\n\r\n   idle-timeout=45m   \r\n\t# indented comment\nimage-selector = a=b\nusers =\n",
		"idle-timeout = 45m\nthis line is wrong\ncolour = blue\nidle-timeout = 50m\nmax-ttl = 2x\n",
		"config = other.conf\nhcloud-token = very-secret\n--location = nbg1\n=\n = 4h\n",
		"default-ttl = 1h30m\nmax-ttl = 1h0m0s\nmax-lifetime = 90000s\nreaper-interval = 1.5m\n",
		"busy-cpu = 007\nmachine-ssh-port = +22\nbusy-cpu = x\n",
		"machine-ssh-port = 99999999999999999999\ndefault-ttl = 9999999999h\n",
		"cloud = aws\nidle-action = Sleep\nlog-level = debug\nprovisioning = infect\nlocal-machines = openssh\n",
		"warn-before = 15m, 5m,,1m\ninfect-flake = github:x/y?dir='nix'\nlisten = [::1]:0\n",
		"instance-user = Bob\ngateway-name = -prod\nlisten = localhost\npublic-name = -p 2222 localhost\n",
		"image = \u00e9t\u00e9\nlocation = fsn1 # not a comment\nserver-type = \x00\n",
		"location = a\rb\ndata-dir = ./data\r\n",
		"firewall-sources = 203.0.113.7, 2001:db8::/64\nfirewall-sources = 10.1.2.3/8\nfirewall-sources = none,10.0.0.0/8\nfirewall-sources = fe80::1%eth0\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		l := newLoader()
		l.applyFile(fuzzPath, []byte(data))
		want := expectFile(t, l, data)

		got := map[string]bool{}
		for _, p := range l.problems {
			if !problemLine.MatchString(p) {
				t.Errorf("problem names no line of the file: %q", p)
			}
			got[p] = true
		}
		if len(l.problems) != len(got) {
			t.Errorf("a problem is reported twice: %q", l.problems)
		}
		for p := range got {
			if !want[p] {
				t.Errorf("unexpected problem %q\nfile: %q", p, data)
			}
		}
		for p := range want {
			if !got[p] {
				t.Errorf("missing problem %q\nfile: %q\ngot: %q", p, data, l.problems)
			}
		}

		// Every rule checked against a value from the file names its line.
		for _, p := range l.c.validate(l.failed) {
			if m := problemLine.FindStringSubmatch(p); m != nil && m[1] != "" && l.c.origin[m[1]] != fuzzPath+":"+m[2] {
				t.Errorf("problem %q names a line that does not set --%s", p, m[1])
			}
		}

		rewriteRoundTrips(t, l)
	})
}

// expectFile walks the file as the package documents it: it checks each
// option the file set and returns the problems the file must give.
func expectFile(t *testing.T, l *loader, data string) map[string]bool {
	want := map[string]bool{}
	seen := map[string]int{}
	for i, raw := range strings.Split(data, "\n") {
		n := i + 1
		where := fmt.Sprintf("%s:%d", fuzzPath, n)
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		o := lookup(name)
		switch {
		case !ok:
			want[where+`: not a "name = value" line`] = true
		case name == "config":
			want[where+": config cannot be set inside a config file"] = true
		case name == "hcloud-token":
			want[where+": the Hetzner token does not belong in the config file; put it in a file of its own and set hcloud-token-file to that file"] = true
		case o == nil:
			want[fmt.Sprintf("%s: unknown option %q; run gateway --help to see the options", where, name)] = true
		case seen[name] != 0:
			want[fmt.Sprintf("%s: %s is already set on line %d", where, name, seen[name])] = true
		default:
			seen[name] = n
			if err := o.bind(&Config{}).set(value); err != nil {
				want[fmt.Sprintf("--%s (from %s): %q %v", name, where, value, err)] = true
				continue
			}
			if src := l.c.origin[name]; src != where {
				t.Errorf("line %d sets --%s, but its value is said to come from %q", n, name, src)
			}
			readsBack(t, o, l, value)
		}
	}
	return want
}

// readsBack checks that the option's value, as read from text, prints as
// text that reads back to the same value.
func readsBack(t *testing.T, o *option, l *loader, text string) {
	t.Helper()
	v := o.bind(&l.c)
	printed := v.format()
	var again Config
	w := o.bind(&again)
	if err := w.set(printed); err != nil {
		t.Errorf("--%s = %q prints as %q, which does not read back: %v", o.name, text, printed, err)
		return
	}
	if a, b := reflect.ValueOf(v.field).Elem().Interface(), reflect.ValueOf(w.field).Elem().Interface(); a != b {
		t.Errorf("--%s = %q reads as %v, prints as %q, which reads as %v", o.name, text, a, printed, b)
	}
	// Text is kept as written; only numbers and durations print anew.
	if _, isText := v.field.(*string); isText && printed != text {
		t.Errorf("--%s = %q is kept as %q", o.name, text, printed)
	}
}

// rewriteRoundTrips writes what the file set as a new config file, one
// "name = value" line per option, and checks it reads back the same.
func rewriteRoundTrips(t *testing.T, l *loader) {
	t.Helper()
	var b strings.Builder
	var set []*option
	for _, o := range options {
		if strings.HasPrefix(l.c.origin[o.name], fuzzPath+":") {
			fmt.Fprintf(&b, "%s = %s\n", o.name, o.bind(&l.c).format())
			set = append(set, o)
		}
	}
	again := newLoader()
	again.applyFile(fuzzPath, []byte(b.String()))
	if len(again.problems) > 0 {
		t.Fatalf("the file written from the values read is refused:\n%s%q", b.String(), again.problems)
	}
	for i, o := range set {
		if want := fuzzPath + ":" + strconv.Itoa(i+1); again.c.origin[o.name] != want {
			t.Errorf("rewritten --%s comes from %q, want %s", o.name, again.c.origin[o.name], want)
		}
		a := reflect.ValueOf(o.bind(&l.c).field).Elem().Interface()
		b := reflect.ValueOf(o.bind(&again.c).field).Elem().Interface()
		if a != b {
			t.Errorf("--%s reads as %v, and as %v once written back", o.name, a, b)
		}
	}
}
