package bootstrap

// These tests run the nix-side bootstrap script through a warm pool
// machine's life: booted with a pool document, personalised once through
// PersonaliseCommand's mode, rebooted with the same pool user_data, and
// restored from a snapshot with a fresh document.

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// personaliseArgs is how PersonaliseProgram runs the script.
var personaliseArgs = []string{"personalise"}

// poolSet is a pool machine's identity: its pool document and the keys a
// person's document for it is made of.
type poolSet struct {
	hostKey []byte // the private half, PEM
	gateway ssh.PublicKey
	pool    Document
}

func newPoolSet(t *testing.T, id string) poolSet {
	t.Helper()
	p := poolSet{hostKey: testkit.NewKey(t).PEM, gateway: testkit.NewKey(t).Public()}
	p.pool = p.doc(t, id, "claude", time.Time{}, p.gateway)
	p.pool.Pool = true
	return p
}

// doc is a document for the pool machine's host key.
func (p poolSet) doc(t *testing.T, id, user string, expires time.Time, keys ...ssh.PublicKey) Document {
	t.Helper()
	d, err := New(id, "cc-"+id, user, expires, 22, keys, p.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// person is the document that gives the pool machine a person.
func (p poolSet) person(t *testing.T, expires time.Time) Document {
	t.Helper()
	return p.doc(t, p.pool.InstanceID, "claude", expires, testkit.NewKey(t).Public(), p.gateway)
}

func render(t *testing.T, d Document) string {
	t.Helper()
	s, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bootPool boots m with p's pool document and checks what it wrote.
func bootPool(t *testing.T, m *machine, p poolSet) map[string]entry {
	t.Helper()
	before := snapshot(t, m.root)
	if res := m.run(t, dash, serveUserData(t, render(t, p.pool), true)); res.code != 0 {
		t.Fatalf("boot with the pool document: exit status %d", res.code)
	}
	want := applied(before, p.pool, "never")
	want["var/lib/cloud-instance/pool"] = fileEntry(0o600, p.pool.InstanceID+"\n")
	tree := snapshot(t, m.root)
	compareTrees(t, tree, want)
	return tree
}

// personalised is the tree after doc, rendered as sent, personalised the
// pool machine whose tree was before.
func personalised(before map[string]entry, doc Document, sent string) map[string]entry {
	want := maps(before)
	want["etc/ssh/authorized_keys.bootstrap/"+doc.User] = fileEntry(0o644, strings.Join(doc.AuthorizedKeys, "\n")+"\n")
	want["etc/cloud-instance/expires"] = fileEntry(0o644, doc.ExpiresAt+"\n")
	want["var/lib/cloud-instance/expires.applied"] = fileEntry(0o600, doc.ExpiresAt+"\n")
	want["var/lib/cloud-instance/personalisation"] = fileEntry(0o600, sent)
	hostname := want["proc/sys/kernel/hostname"]
	hostname.content = doc.Hostname
	want["proc/sys/kernel/hostname"] = hostname
	delete(want, "var/lib/cloud-instance/pool")
	return want
}

// TestScriptPoolMachine follows one pool machine: personalised, the same
// document again, another refused, an extend, a reboot with the pool
// user_data (the personalisation stays), and a restore with a fresh
// document (the pool past is forgotten).
func TestScriptPoolMachine(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	p := newPoolSet(t, "p1")
	poolURL := serveUserData(t, render(t, p.pool), true)
	pooled := bootPool(t, m, p)

	person := p.person(t, time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
	sent := render(t, person)
	if res := m.runMode(t, dash, personaliseArgs, []byte(sent)); res.code != 0 {
		t.Fatalf("personalise: exit status %d", res.code)
	}
	done := personalised(pooled, person, sent)
	compareTrees(t, snapshot(t, m.root), done)

	// A gateway retrying after a crash sends the very same document.
	res := m.runMode(t, dash, personaliseArgs, []byte(sent))
	if res.code != 0 || !strings.Contains(res.stderr, "nothing to change") {
		t.Fatalf("the same document again: exit status %d, want 0 and nothing changed", res.code)
	}
	compareTrees(t, snapshot(t, m.root), done)

	other := p.person(t, time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
	res = m.runMode(t, dash, personaliseArgs, []byte(render(t, other)))
	if res.code == 0 || !strings.Contains(res.stderr, "personalised already, with another document; refusing it") {
		t.Fatalf("another person's document: exit status %d, want it refused", res.code)
	}
	compareTrees(t, snapshot(t, m.root), done)

	// The person extends; then the machine is powered off and on again,
	// with the user_data it was created with.
	runAsInstanceUser(t, m, ExpiresCommand(time.Date(2031, 3, 4, 9, 0, 0, 0, time.UTC)))
	extended := fileEntry(0o644, "2031-03-04T09:00:00Z\n")
	if owners() {
		extended.uid, extended.gid = instanceUID, instanceGID
	}
	done["etc/cloud-instance/expires"] = extended
	res = m.run(t, dash, poolURL)
	if res.code != 0 || !strings.Contains(res.stderr, "applying the saved personalisation") {
		t.Fatalf("reboot: exit status %d, want the saved personalisation applied", res.code)
	}
	compareTrees(t, snapshot(t, m.root), done)

	// Restored from a snapshot, with a fresh document of its own.
	restored := newDoc(t, "r1", "cc-r1", "claude", time.Date(2031, 4, 1, 0, 0, 0, 0, time.UTC), 22, testkit.NewKey(t).Public())
	res = m.run(t, dash, serveUserData(t, render(t, restored), true))
	if res.code != 0 || !strings.Contains(res.stderr, "forgetting this machine's pool state") {
		t.Fatalf("restore: exit status %d, want the pool state forgotten", res.code)
	}
	want := applied(done, restored, restored.ExpiresAt)
	delete(want, "var/lib/cloud-instance/personalisation")
	compareTrees(t, snapshot(t, m.root), want)

	// Not a pool machine any more: its old pool document is no claim.
	before := snapshot(t, m.root)
	res = m.runMode(t, dash, personaliseArgs, []byte(sent))
	if res.code == 0 || !strings.Contains(res.stderr, "not a pool machine; refusing") {
		t.Fatalf("personalise after the restore: exit status %d, want it refused", res.code)
	}
	compareTrees(t, snapshot(t, m.root), before)
}

// TestScriptPoolRebootBeforeClaim: a pool machine rebooted before anyone
// claimed it is still a pool machine; one whose saved personalisation is
// another instance's forgets it.
func TestScriptPoolRebootBeforeClaim(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	first := newPoolSet(t, "q1")
	bootPool(t, m, first)
	person := first.person(t, time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
	if res := m.runMode(t, dash, personaliseArgs, []byte(render(t, person))); res.code != 0 {
		t.Fatalf("personalise: exit status %d", res.code)
	}

	// A new pool machine made from a snapshot of that disk.
	second := newPoolSet(t, "q2")
	before := snapshot(t, m.root)
	res := m.run(t, dash, serveUserData(t, render(t, second.pool), true))
	if res.code != 0 || !strings.Contains(res.stderr, "forgetting the saved personalisation of another instance") {
		t.Fatalf("boot as another pool machine: exit status %d", res.code)
	}
	want := applied(before, second.pool, "never")
	want["var/lib/cloud-instance/pool"] = fileEntry(0o600, "q2\n")
	delete(want, "var/lib/cloud-instance/personalisation")
	compareTrees(t, snapshot(t, m.root), want)

	if res := m.run(t, dash, serveUserData(t, render(t, second.pool), true)); res.code != 0 {
		t.Fatalf("reboot unclaimed: exit status %d", res.code)
	}
	compareTrees(t, snapshot(t, m.root), want)
}

// TestScriptPersonaliseRefuses: whatever is wrong with the document on
// standard input, or with the machine it is for, is refused with a reason
// and nothing is written.
func TestScriptPersonaliseRefuses(t *testing.T) {
	t.Parallel()
	p := newPoolSet(t, "x1")
	expires := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	good := render(t, p.person(t, expires))
	otherHost := newPoolSet(t, "x1").person(t, expires)
	tests := []struct {
		name   string
		stdin  string
		reason string
		// boot, when set, readies the machine instead of the pool boot.
		boot func(t *testing.T, m *machine)
	}{
		{name: "another instance id", stdin: render(t, p.doc(t, "x2", "claude", expires, p.gateway)),
			reason: "the document is for instance x2, but this pool machine is instance x1"},
		{name: "another host key", stdin: render(t, otherHost),
			reason: "the document's host key is not this machine's"},
		{name: "another user", stdin: render(t, p.doc(t, "x1", longUser, expires, p.gateway)),
			reason: "the document is for user " + longUser + ", but this machine's instance user is claude"},
		{name: "a pool document", stdin: render(t, p.pool),
			reason: "the document is a pool document, not a person's"},
		{name: "oversized", stdin: good + strings.Repeat(" ", MaxSize),
			reason: "over the 32768 byte limit"},
		{name: "garbage", stdin: "{version: 1, $(touch MARKER)}",
			reason: "standard input holds no JSON document"},
		{name: "two documents", stdin: good + good,
			reason: "it is not one JSON object"},
		{name: "nothing", stdin: "",
			reason: "no document on standard input"},
		{name: "an invalid field", stdin: strings.Replace(good, `"user":"claude"`, `"user":"$(touch MARKER)"`, 1),
			reason: "user is not a valid user name"},
		{name: "a machine booted as a person's", stdin: good,
			reason: "this machine is not a pool machine",
			boot: func(t *testing.T, m *machine) {
				d := p.person(t, expires)
				if res := m.run(t, dash, serveUserData(t, render(t, d), true)); res.code != 0 {
					t.Fatalf("boot: exit status %d", res.code)
				}
			}},
		{name: "a machine never booted", stdin: good,
			reason: "this machine is not a pool machine",
			boot:   func(t *testing.T, m *machine) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			if tt.boot != nil {
				tt.boot(t, m)
			} else {
				bootPool(t, m, p)
			}
			before := snapshot(t, m.root)
			res := m.runMode(t, dash, personaliseArgs, []byte(strings.ReplaceAll(tt.stdin, "MARKER", m.marker)))
			if res.code == 0 {
				t.Fatal("the script accepted it")
			}
			if !strings.Contains(res.stderr, tt.reason) || !strings.Contains(res.stderr, "refusing") {
				t.Errorf("stderr does not say it refuses the document because %s", tt.reason)
			}
			compareTrees(t, snapshot(t, m.root), before)
		})
	}
}

// TestScriptRefusesBadPoolField: the pool field is true or absent.
func TestScriptRefusesBadPoolField(t *testing.T) {
	t.Parallel()
	p := newPoolSet(t, "f1")
	for _, value := range []string{"false", `"true"`, "1"} {
		t.Run(value, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			userData := strings.Replace(render(t, p.pool), `"pool":true`, `"pool":`+value, 1)
			before := snapshot(t, m.root)
			res := m.run(t, dash, serveUserData(t, userData, true))
			if res.code == 0 || !strings.Contains(res.stderr, "pool is not true") {
				t.Fatalf("exit status %d, want the pool field refused", res.code)
			}
			compareTrees(t, snapshot(t, m.root), before)
		})
	}
}
