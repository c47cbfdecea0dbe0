package testkit

import (
	"io"
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

	// A peer that changes one byte fails the trip.
	bad, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	go func() {
		c, err := bad.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(c)
		b[len(b)/2] ^= 1
		c.Write(b)
	}()
	c, err = net.DialTimeout("tcp", bad.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := EchoTrip(c, 1000); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("a changed byte: %v, want the bytes to differ", err)
	}

	// Without a way to send EOF the trip could not end: refused at once.
	a, b := net.Pipe()
	defer b.Close()
	if err := EchoTrip(a, 10); err == nil {
		t.Error("a connection that cannot half-close: no error")
	}
}
