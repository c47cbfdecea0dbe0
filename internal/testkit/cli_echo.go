package testkit

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
)

// halfCloser is a connection that can send EOF and still read: TCP, and
// SSH channels.
type halfCloser interface {
	CloseWrite() error
}

// EchoTrip sends n random bytes over c to an echo server, sends EOF, and
// checks that the same bytes come back followed by EOF. It closes c; a
// deadline on c, if c takes one, is the caller's.
func EchoTrip(c net.Conn, n int) error {
	defer c.Close()
	hc, ok := c.(halfCloser)
	if !ok {
		return errors.New("the connection cannot send EOF and still read")
	}
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = hc.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		c.Close() // unblocks the writer
	}
	werr := <-errc
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("got %d bytes back that differ from the %d sent", len(got), n)
	}
	return nil
}
