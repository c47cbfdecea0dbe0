package gateway

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync/atomic"

	"charm.land/ssh"
)

// Every TCP connection the gateway accepts gets a short id before its
// handshake (accept). Every log line about the connection carries it as
// conn=ID, the audit events it causes carry it (lease.Event's Conn, passed
// to the lease manager with lease.WithConn), and the reference a person is
// told on an error is the id and the error's number on that connection
// (ref ID-1), so the log lines and events of what a person quotes are one
// grep away.

// connIDAlphabet is Crockford's base32 in lower case: no i, l, o or u, so
// an id read over the phone is not misheard.
const connIDAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// newConnID returns 8 random characters of connIDAlphabet: 40 bits. Among
// 100,000 connections in a day, the chance that any two share an id is
// under 1%, and two that do still differ in time, address and key.
func newConnID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = connIDAlphabet[b[i]%32] // 256 is a multiple of 32: uniform
	}
	return string(b)
}

// connTrace is what the gateway's log knows of one connection: its id, a
// logger whose lines carry it, and how many errors its person was told.
type connTrace struct {
	id   string
	log  *slog.Logger
	told atomic.Int32
}

func (g *Gateway) newConnTrace() *connTrace {
	id := newConnID()
	return &connTrace{id: id, log: g.log.With("conn", id)}
}

type connTraceKey struct{}

// traceOf returns the trace of ctx's connection, which the server's
// ConnCallback puts in every connection's context (they all come from
// accept) before anything else.
func traceOf(ctx ssh.Context) *connTrace {
	t, _ := ctx.Value(connTraceKey{}).(*connTrace)
	return t
}

// nextRef returns the reference of the next error its person is told: the
// connection's id and the error's number on it.
func (t *connTrace) nextRef() string {
	return fmt.Sprintf("%s-%d", t.id, t.told.Add(1))
}
