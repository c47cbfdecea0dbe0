package machine

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// poolFixture is a fixture whose machine started from a pool document:
// the gateway's key its only one, no expiry.
func poolFixture(t *testing.T, k kind) *fixture {
	t.Helper()
	f := makeFixture(t, k)
	pool := f.document(t, time.Time{}, f.gateway.Public())
	pool.Pool = true
	f.cfg.Doc = pool
	f.start(t)
	return f
}

// document is a document for the fixture's machine with keys.
func (f *fixture) document(t *testing.T, expires time.Time, keys ...ssh.PublicKey) bootstrap.Document {
	t.Helper()
	port, _ := strconv.Atoi(f.port)
	d, err := bootstrap.New(f.cfg.Doc.InstanceID, f.cfg.Doc.Hostname, f.kind.user, expires, port, keys, []byte(f.cfg.Doc.HostKey.Private))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPersonalisePoolMachine gives a machine started from a pool document
// its person the way the gateway does, through proxy.Machines.Personalise
// with the gateway's key: then the person's key logs in with the real ssh
// client, the expires file has the person's expiry, and both last across a
// power cycle that boots with the pool document again.
func TestPersonalisePoolMachine(t *testing.T) {
	forPoolKinds(t, func(t *testing.T, f *fixture) {
		if r := f.ssh(t, f.user, f.kind.user, nil, "true"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Fatalf("the person's key on a pool machine: exit %d, stderr %q; want it refused", r.code, r.stderr)
		}
		expires := filepath.Join(f.cfg.Dir, ExpiresFile)
		assertContent(t, expires, "never\n")

		person := f.document(t, time.Date(2031, 6, 7, 8, 9, 10, 0, time.UTC), f.user.Public(), f.gateway.Public())
		rendered, err := person.Render()
		if err != nil {
			t.Fatal(err)
		}
		pool := proxy.NewPool(proxy.PoolOptions{Key: f.gateway.Signer})
		defer pool.Close()
		machines := proxy.NewMachines(pool, f.kind.user)
		hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.hostKey)))
		personalise := func(doc string) error {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			return machines.Personalise(ctx, f.cfg.Addr, hostKey, doc)
		}
		// The second time is a gateway retrying after a crash.
		for i := range 2 {
			if err := personalise(rendered); err != nil {
				t.Fatalf("personalise, time %d: %v", i+1, err)
			}
		}
		loggedIn := func(when string) {
			t.Helper()
			r := f.ssh(t, f.user, f.kind.user, nil, "echo in")
			if r.code != 0 || r.stdout != "in\n" {
				t.Errorf("the person's key %s: exit %d, stdout %q, stderr %q", when, r.code, r.stdout, r.stderr)
			}
			assertContent(t, expires, "2031-06-07T08:09:10Z\n")
		}
		loggedIn("after the personalisation")

		other := f.document(t, time.Date(2031, 6, 7, 8, 9, 10, 0, time.UTC), f.other.Public(), f.gateway.Public())
		otherRendered, err := other.Render()
		if err != nil {
			t.Fatal(err)
		}
		if err := personalise(otherRendered); err == nil || !strings.Contains(err.Error(), "personalised already, with another document") {
			t.Errorf("another person's document: %v, want it refused", err)
		}
		if r := f.ssh(t, f.other, f.kind.user, nil, "true"); r.code != 255 {
			t.Errorf("the other person's key: exit %d, want it refused", r.code)
		}

		pool.Close()
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		poolDoc := f.cfg.Doc
		f.start(t) // with the pool document, as Hetzner's user_data never changes
		loggedIn("after a power cycle")

		// Restored with a document of its own, the machine forgets its pool
		// past: its pool document makes it a pool machine again.
		for _, doc := range []bootstrap.Document{f.document(t, time.Time{}, f.other.Public()), poolDoc} {
			if err := f.m.Close(); err != nil {
				t.Fatal(err)
			}
			f.cfg.Doc = doc
			f.start(t)
		}
		if r := f.ssh(t, f.user, f.kind.user, nil, "true"); r.code != 255 {
			t.Errorf("the person's key after a restore and a pool boot: exit %d, want it refused", r.code)
		}
	})
}

// forPoolKinds runs test once per kind of machine, on a pool fixture.
func forPoolKinds(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) { test(t, poolFixture(t, k)) })
	}
}

func assertContent(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s holds %q (%v), want %q", path, got, err, want)
	}
}

// TestPersonaliseWithoutJQ: on a host without jq, which the image's script
// needs, a claim fails saying what to install, and the machine stays a
// pool machine.
func TestPersonaliseWithoutJQ(t *testing.T) {
	f := poolFixture(t, kinds(t)[0])
	person := f.document(t, time.Time{}, f.user.Public(), f.gateway.Public())
	rendered, err := person.Render()
	if err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(f.cfg.Dir, BinDir, bootstrap.PersonaliseProgram)
	r := run(t, strings.NewReader(rendered), "env", "PATH="+t.TempDir(), "/bin/sh", program)
	if r.code != 1 || !strings.Contains(r.stderr, "jq is not installed on the gateway's host (Debian: apt-get install jq)") {
		t.Errorf("without jq: exit %d, stderr %q; want the missing jq named", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(f.cfg.Dir, RootDir, poolPath)); err != nil {
		t.Errorf("the machine is no pool machine any more: %v", err)
	}
}
