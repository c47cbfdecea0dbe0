package gateway

// Strangers: people whose keys are not on the lists, and connections that
// never authenticate. They must not be able to flush the audit trail, nor
// hold the door shut for the people allowed in.

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// countingStore counts the writes that reach the store: on bbolt each is
// one write transaction, and so one fsync.
type countingStore struct {
	lease.Store
	writes atomic.Int64
}

func (s *countingStore) Put(l lease.Lease, events ...lease.Event) error {
	s.writes.Add(1)
	return s.Store.Put(l, events...)
}

func (s *countingStore) Delete(fp string, events ...lease.Event) error {
	s.writes.Add(1)
	return s.Store.Delete(fp, events...)
}

func (s *countingStore) AppendEvent(e lease.Event) error {
	s.writes.Add(1)
	return s.Store.AppendEvent(e)
}

func (s *countingStore) AppendRefusals(rs []lease.Refusal) error {
	s.writes.Add(1)
	return s.Store.AppendRefusals(rs)
}

// door is a gateway with an allow list and an admin list, its leases on a
// bbolt file behind a countingStore, and no cloud: strangers never get
// past the front door.
type door struct {
	addr    string
	g       *Gateway
	leases  *lease.Manager
	store   *countingStore
	clock   *testkit.Clock
	allowed gossh.Signer // on the users list
	admin   gossh.Signer // on the admins list
}

// doorSpec is what a door's test changes of its gateway's options.
type doorSpec func(o *Options)

func startDoor(t *testing.T, specs ...doorSpec) *door {
	t.Helper()
	d := &door{
		clock:   testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
		allowed: testkit.NewKey(t).Signer,
		admin:   testkit.NewKey(t).Signer,
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users"), line(d.allowed.PublicKey(), "allowed"))
	writeFile(t, filepath.Join(dir, "admins"), line(d.admin.PublicKey(), "admin"))
	users, err := LoadKeyList(filepath.Join(dir, "users"), testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	admins, err := LoadKeyList(filepath.Join(dir, "admins"), testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d.store = &countingStore{Store: store}
	d.leases = lease.NewManager(lease.Config{Store: d.store, Clock: d.clock, Logger: testkit.Quiet})
	opts := Options{
		HostKey: testkit.NewKey(t).Signer, Pool: newPool(testkit.NewKey(t).Signer), Users: users, Admins: admins,
		Leases: d.leases, Clock: d.clock, Logger: testkit.Quiet, Invocation: "ssh gw",
	}
	for _, s := range specs {
		s(&opts)
	}
	if d.g, err = New(opts); err != nil {
		t.Fatal(err)
	}
	d.addr = serve(t, d.g)
	return d
}

// run runs a gateway command as key and returns its output.
func (d *door) run(t *testing.T, key gossh.Signer, cmd string) string {
	t.Helper()
	c, err := gossh.Dial("tcp", d.addr, &gossh.ClientConfig{
		User: "person", Auth: []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial as %s: %v", gossh.FingerprintSHA256(key.PublicKey()), err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v (output %q)", cmd, err, out)
	}
	return string(out)
}

// flood offers the gateway keys strangers refused: conns connections at
// once, each offering perConn keys none of which is on a list. It returns
// the keys' fingerprints.
func (d *door) flood(t *testing.T, conns, perConn int) []string {
	t.Helper()
	var fps []string
	signers := make([][]gossh.Signer, conns)
	for i := range signers {
		for range perConn {
			k := testkit.NewKey(t).Signer
			signers[i] = append(signers[i], k)
			fps = append(fps, gossh.FingerprintSHA256(k.PublicKey()))
		}
	}
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			_, err := gossh.Dial("tcp", d.addr, &gossh.ClientConfig{
				User: "stranger", Auth: []gossh.AuthMethod{gossh.PublicKeys(signers[i]...)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
			})
			if err == nil {
				t.Error("a stranger got in")
			}
		})
	}
	wg.Wait()
	return fps
}

// TestRefusedKeysCannotFlushTheAuditTrail: hundreds of refused keys leave
// the admin's earlier event in `admin events`, cost no write each, and show
// up, counted, in `admin refusals`.
func TestRefusedKeysCannotFlushTheAuditTrail(t *testing.T) {
	d := startDoor(t)
	d.leases.Record(lease.Event{Kind: "admin", LeaseID: "abc", Detail: "extend abc 2h by an admin"})

	writes := d.store.writes.Load()
	// Ten keys a connection: x/crypto refuses each of them before it
	// gives up on the connection (see TestAuthAttemptsAreBounded).
	fps := d.flood(t, 30, 10)
	if n := d.store.writes.Load() - writes; n > 0 {
		t.Errorf("%d refused keys took %d writes to the store, want none until the minute is over", len(fps), n)
	}

	events := d.run(t, d.admin, "admin events")
	if !strings.Contains(events, "extend abc 2h by an admin") {
		t.Errorf("after %d refused keys, `admin events` lost the admin's event:\n%s", len(fps), events)
	}
	if strings.Contains(events, "auth-refused") {
		t.Errorf("`admin events` lists refusals one by one:\n%s", events)
	}

	// The admin sees them counted: one line for the source and minute.
	refusals := d.run(t, d.admin, "admin refusals")
	want := fmt.Sprintf("2026-12-01T10:00:00Z  127.0.0.1  auth-refused  %d ", len(fps))
	if !strings.Contains(refusals, want) || strings.Count(refusals, "\n") != 2 {
		t.Errorf("`admin refusals` after %d refused keys from 127.0.0.1:\n%s\nwant one line starting %q", len(fps), refusals, want)
	}
}
