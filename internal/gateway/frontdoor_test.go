package gateway

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// startFrontDoor serves a gateway whose allow list holds only allowed. Its
// lease manager has a store (for the audit log) but no provider: these
// tests never get past authentication.
func startFrontDoor(t *testing.T, allowed gossh.PublicKey, handshake time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, line(allowed, "allowed"))
	users, err := LoadKeyList(path, testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	admins, _ := LoadKeyList("", testkit.Quiet)
	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g, err := New(Options{
		HostKey: testkit.NewKey(t).Signer, Pool: newPool(testkit.NewKey(t).Signer), Users: users, Admins: admins,
		Leases: lease.NewManager(lease.Config{Store: store, Logger: testkit.Quiet}), Logger: testkit.Quiet,
		HandshakeTimeout: handshake,
	})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, g)
}

// serve serves g on a loopback port until the test ends and returns its
// address.
func serve(t *testing.T, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	t.Cleanup(func() { g.Shutdown(time.Second) })
	return ln.Addr().String()
}

func TestAuthAttemptsAreBounded(t *testing.T) {
	allowed := testkit.NewKey(t).Signer
	addr := startFrontDoor(t, allowed.PublicKey(), 20*time.Second)

	// x/crypto forgives the first six offers of unknown keys (people hold
	// several), then counts six failures: twenty wrong keys exhaust it
	// before the right one comes.
	var signers []gossh.Signer
	for range 20 {
		signers = append(signers, testkit.NewKey(t).Signer)
	}
	signers = append(signers, allowed)
	_, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "anyone", Auth: []gossh.AuthMethod{gossh.PublicKeys(signers...)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("the twenty-first key got in; attempts are not bounded")
	}

	// The right key alone gets in.
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "anyone", Auth: []gossh.AuthMethod{gossh.PublicKeys(allowed)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("allowed key: %v", err)
	}
	c.Close()

	// Passwords are not offered at all.
	_, err = gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "anyone", Auth: []gossh.AuthMethod{gossh.Password("hunter2")},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "[none]") && !strings.Contains(err.Error(), "publickey") {
		t.Errorf("password auth: %v; want refused with only publickey offered", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	addr := startFrontDoor(t, testkit.NewKey(t).Signer.PublicKey(), 200*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Say nothing; the gateway must hang up on its own. The deadline only
	// bounds the test.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a silent client kept its connection for 30s")
	}
}

// TestShutdownRightAfterStart: stopping a gateway at once after starting it
// neither races (run under -race) nor leaves Serve running.
func TestShutdownRightAfterStart(t *testing.T) {
	users, _ := LoadKeyList("", testkit.Quiet)
	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for range 20 {
		g, err := New(Options{
			HostKey: testkit.NewKey(t).Signer, Pool: newPool(testkit.NewKey(t).Signer), Users: users, Admins: users,
			Leases: lease.NewManager(lease.Config{Store: store, Logger: testkit.Quiet}), Logger: testkit.Quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- g.Serve(ln) }()
		g.Shutdown(time.Second)
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve after Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve still running 10s after Shutdown")
		}
	}
}

// TestSHA1SignaturesRefused: an RSA key gets in when it signs with SHA-2
// (rsa-sha2-256, rsa-sha2-512), never with SHA-1 (ssh-rsa), as with OpenSSH
// 8.8 and later.
func TestSHA1SignaturesRefused(t *testing.T) {
	signer := testkit.NewRSAKey(t).Signer
	addr := startFrontDoor(t, signer.PublicKey(), 20*time.Second)
	for _, algo := range []string{gossh.KeyAlgoRSA, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSASHA512} {
		only, err := gossh.NewSignerWithAlgorithms(signer.(gossh.AlgorithmSigner), []string{algo})
		if err != nil {
			t.Fatal(err)
		}
		c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
			User: "anyone", Auth: []gossh.AuthMethod{gossh.PublicKeys(only)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if c != nil {
			c.Close()
		}
		if refused := err != nil; refused != (algo == gossh.KeyAlgoRSA) {
			t.Errorf("signing with %s: err = %v", algo, err)
		}
	}
}
