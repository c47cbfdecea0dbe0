package testkit

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestEchoTrip(t *testing.T) {
	ln := EchoServer(t)
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := EchoTrip(c, 1<<20); err != nil {
		t.Fatalf("through the echo server: %v", err)
	}

	// A byte changed on the way back fails the trip.
	c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := EchoTrip(corrupting{c.(*net.TCPConn)}, 1000); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("a changed byte: %v, want the bytes to differ", err)
	}

	// Without a way to send EOF the trip could not end: refused at once.
	a, b := net.Pipe()
	defer b.Close()
	if err := EchoTrip(a, 10); err == nil {
		t.Error("a connection that cannot half-close: no error")
	}
}

// corrupting flips a bit in the first byte of every read.
type corrupting struct{ *net.TCPConn }

func (c corrupting) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		p[0] ^= 1
	}
	return n, err
}
