package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

// frontDoor is a minimal stand-in for the gateway's front door: an x/crypto
// SSH server that accepts session channels, answers and collects requests up
// to the first shell/exec/subsystem like the real one, and calls Bridge.
type frontDoor struct {
	addr       string
	hostKey    gossh.PublicKey
	gatewayKey gossh.Signer // authorized on the machine
	results    chan error   // one per bridged session, after Bridge returned
	activity   atomic.Int64
	sent       sentLog // what bridges sent downstream besides data
	log        *slog.Logger
	logs       *testkit.Buffer // what bridges logged through log
	obs        countingObserver

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// startFrontDoor serves on loopback; every downstream connection gets its own
// upstream connection to m. ctx is handed to Bridge.
func startFrontDoor(ctx context.Context, t testing.TB, m *sshd, gatewayKey gossh.Signer) *frontDoor {
	t.Helper()
	hostSigner := testkit.NewKey(t).Signer
	cfg := &gossh.ServerConfig{
		// Test only: anyone with a key gets in.
		PublicKeyCallback: func(gossh.ConnMetadata, gossh.PublicKey) (*gossh.Permissions, error) {
			return nil, nil
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log, logs := testkit.Logger()
	fd := &frontDoor{
		log:        log.With("conn", "fd000001"),
		logs:       logs,
		addr:       ln.Addr().String(),
		hostKey:    hostSigner.PublicKey(),
		gatewayKey: gatewayKey,
		results:    make(chan error, 64),
		ln:         ln,
	}
	fd.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fd.mu.Lock()
			fd.conns = append(fd.conns, conn)
			fd.mu.Unlock()
			fd.wg.Go(func() { fd.serve(ctx, t, conn, cfg, m, gatewayKey) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		fd.mu.Lock()
		for _, c := range fd.conns {
			c.Close()
		}
		fd.mu.Unlock()
		fd.wg.Wait()
	})
	return fd
}

func (fd *frontDoor) serve(ctx context.Context, t testing.TB, conn net.Conn, cfg *gossh.ServerConfig, m *sshd, gatewayKey gossh.Signer) {
	sc, chans, reqs, err := gossh.NewServerConn(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	defer sc.Close()
	fd.wg.Go(func() { gossh.DiscardRequests(reqs) })

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, err := Dial(dialCtx, m.addr, m.user, gatewayKey, m.hostKey)
	cancel()
	if err != nil {
		t.Errorf("front door: dial machine: %v", err)
		return
	}
	defer up.Close()

	var sessions sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(gossh.UnknownChannelType, "only sessions in this test")
			continue
		}
		sessions.Go(func() { fd.session(ctx, nc, up) })
	}
	sessions.Wait()
}

// session collects the early requests the way the front door does, then bridges.
func (fd *frontDoor) session(ctx context.Context, nc gossh.NewChannel, up *gossh.Client) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	var early []*gossh.Request
	for req := range reqs {
		switch req.Type {
		case "pty-req", "env", "window-change":
			req.Reply(true, nil)
			early = append(early, req)
		case "shell", "exec", "subsystem":
			s := ClientSession{Channel: loggedChannel{ch, &fd.sent}, Requests: reqs, Early: early, Start: req}
			fd.results <- Bridge(ctx, up, s, Hooks{Activity: func() { fd.activity.Add(1) }, Log: fd.log, Observer: &fd.obs})
			return
		default:
			req.Reply(false, nil)
		}
	}
	ch.Close()
	fd.results <- errors.New("channel closed before the program started")
}

// result waits for the next bridged session to finish.
func (fd *frontDoor) result(t testing.TB) error {
	t.Helper()
	select {
	case err := <-fd.results:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("bridge did not return")
		return nil
	}
}

// dial connects an x/crypto client to the front door.
func (fd *frontDoor) dial(t testing.TB) *gossh.Client {
	t.Helper()
	key := testkit.NewKey(t).Signer
	c, err := gossh.Dial("tcp", fd.addr, &gossh.ClientConfig{
		User:            "person",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.FixedHostKey(fd.hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial front door: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// setup starts a machine and a front door in front of it.
func setup(ctx context.Context, t testing.TB, sshdExtra ...string) (*sshd, *frontDoor) {
	t.Helper()
	gatewayKey := testkit.NewKey(t).Signer
	m := startSSHD(t, gatewayKey.PublicKey(), sshdExtra...)
	return m, startFrontDoor(ctx, t, m, gatewayKey)
}

// sentLog records, in order, the requests (by type) and EOFs a bridge sends
// on the person's channel: the order in which they go on the wire.
type sentLog struct {
	mu     sync.Mutex
	events []string
}

func (l *sentLog) add(event string) {
	l.mu.Lock()
	l.events = append(l.events, event)
	l.mu.Unlock()
}

func (l *sentLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

type loggedChannel struct {
	gossh.Channel
	log *sentLog
}

func (c loggedChannel) CloseWrite() error {
	c.log.add("EOF")
	return c.Channel.CloseWrite()
}

func (c loggedChannel) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	c.log.add(name)
	return c.Channel.SendRequest(name, wantReply, payload)
}
