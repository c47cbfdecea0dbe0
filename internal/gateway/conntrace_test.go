package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestEveryLineOfAConnectionCarriesItsID: each connection's log lines, the
// gateway's, the proxy's and the lease manager's, carry one id of its own,
// including a connection that fails its handshake; the audit events of a
// connection carry the same id.
func TestEveryLineOfAConnectionCarriesItsID(t *testing.T) {
	r := newRefusingCloud(t)
	alice, bob := testkit.NewKey(t).Signer, testkit.NewKey(t).Signer
	r.run(t, alice, "echo hi")
	if _, err := r.dial(t, bob).Dial("tcp", "localhost:80"); err == nil {
		t.Fatal("a forward reached a machine the cloud could not make")
	}
	junk, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	junk.Write([]byte("SSH-2.0-junk\r\nnot a key exchange\r\n"))
	junk.Close()
	if !r.logs.WaitFor("connection failed", 10*time.Second) {
		t.Fatalf("no line about the failed handshake:\n%s", r.logs.String())
	}

	// The fingerprint each connection's lines name, and the failed one's.
	person := map[string]string{}
	var failed string
	for _, l := range r.lines(t) {
		conn, _ := l["conn"].(string)
		fp, named := l["fingerprint"].(string)
		switch {
		case l["msg"] == "connection failed":
			failed = conn
		case !named:
			continue
		}
		if conn == "" {
			t.Errorf("a line about a connection carries no id: %v", l)
			continue
		}
		if named && person[conn] != "" && person[conn] != fp {
			t.Errorf("connection %s has lines about %s and %s", conn, person[conn], fp)
		}
		if named {
			person[conn] = fp
		}
	}
	conns := map[string]string{} // fingerprint to connection id
	for conn, fp := range person {
		if other, ok := conns[fp]; ok {
			t.Errorf("%s's one connection has lines under ids %s and %s", fp, other, conn)
		}
		conns[fp] = conn
	}
	a, b := conns[lease.Fingerprint(alice.PublicKey())], conns[lease.Fingerprint(bob.PublicKey())]
	if a == "" || b == "" || a == b || failed == "" || failed == a || failed == b {
		t.Errorf("connection ids alice %q, bob %q, failed handshake %q: want three different", a, b, failed)
	}

	events, err := r.store.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	connected := map[string]string{}
	for _, e := range events {
		if e.Kind == "connect" {
			connected[e.Fingerprint] = e.Conn
		}
	}
	for fp, conn := range conns {
		if connected[fp] != conn {
			t.Errorf("%s's connect event carries id %q, its log lines %q", fp, connected[fp], conn)
		}
	}
}
