package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
)

// EchoServer listens on loopback and serves Echo until the test ends.
func EchoServer(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() { Echo(ln, &wg) })
	return ln
}

// Echo accepts connections on ln until it closes, sending back what each
// one sends and, after its EOF, an EOF of its own. Each connection runs in
// wg, so a test can wait for them to end.
func Echo(ln net.Listener, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			io.Copy(c, c)
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		})
	}
}
