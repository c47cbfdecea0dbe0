package testkit

import (
	"bytes"
	"io"
	"net"
	"testing"
)

func TestEchoServer(t *testing.T) {
	c, err := net.Dial("tcp", EchoServer(t).Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := bytes.Repeat([]byte("echo "), 1000)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c) // ends only if the server sends EOF back
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("echo: %d bytes back (%v), want the %d sent", len(got), err, len(sent))
	}
}
