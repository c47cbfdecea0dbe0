package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// handshakeTimeout bounds how long a connection may take to authenticate.
	handshakeTimeout = 30 * time.Second
	// closeTimeout bounds how long Close waits for sessions to end.
	closeTimeout = 10 * time.Second
	// dialTimeout bounds a direct-tcpip dial.
	dialTimeout = 10 * time.Second
)

// builtin is the in-process SSH server.
type builtin struct {
	addr   string
	user   string
	dir    string // the machine's folder, where its expires file is
	home   string // Dir/home, where the home volume is mounted
	homes  *homes
	nssEnv []string // preloads the machine's user database; nil without nss_wrapper
	tmux   *tmuxServer
	config *ssh.ServerConfig
	log    *slog.Logger
	ln     net.Listener

	ctx    context.Context // cancelled by Close; ends dials and sessions
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the machine starts

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}

	closeOnce sync.Once
	closeErr  error
}

// StartBuiltin starts an in-process SSH server on cfg.Addr and returns once
// it listens.
func StartBuiltin(cfg Config) (Machine, error) {
	dir, err := prepare(&cfg)
	if err != nil {
		return nil, fmt.Errorf("start builtin machine: %w", err)
	}
	homes, err := startHomes(dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("start builtin machine: %w", err)
	}
	m, err := startBuiltin(cfg, dir, homes)
	if err != nil {
		homes.close()
		return nil, fmt.Errorf("start builtin machine: %w", err)
	}
	return m, nil
}

func startBuiltin(cfg Config, dir string, homes *homes) (*builtin, error) {
	m := &builtin{
		addr:  cfg.Addr,
		user:  cfg.Doc.User,
		dir:   dir,
		home:  filepath.Join(dir, HomeDir),
		homes: homes,
		log:   logger(cfg).With("machine", cfg.Doc.InstanceID, "kind", "builtin"),
		conns: make(map[net.Conn]struct{}),
	}
	var err error
	if m.nssEnv, err = userDatabase(dir, m.user, m.home, m.log); err != nil {
		return nil, err
	}
	hostKey, err := ssh.ParsePrivateKey([]byte(cfg.Doc.HostKey.Private))
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	m.config = &ssh.ServerConfig{
		PublicKeyCallback: m.authorize,
		ServerVersion:     "SSH-2.0-cc-gateway-machine",
	}
	m.config.AddHostKey(hostKey)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if m.tmux, err = newTmuxServer(); err != nil {
		ln.Close()
		return nil, err
	}
	m.ln = ln
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.accept()
	m.log.Debug("machine listening", "addr", ln.Addr().String())
	return m, nil
}

// authorize lets in exactly the document's user with exactly the keys of
// its authorized keys file, but for revoked ones. Both files are read at
// each login, as sshd reads them: a revocation and a personalisation apply
// at once.
func (m *builtin) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if meta.User() != m.user {
		return nil, fmt.Errorf("user %q is not %q", meta.User(), m.user)
	}
	wire := key.Marshal()
	revoked, err := listsKey(filepath.Join(m.dir, RevokedKeys), wire)
	if err != nil {
		return nil, fmt.Errorf("revoked keys unreadable, refusing every key: %w", err)
	}
	if revoked {
		return nil, errors.New("key revoked")
	}
	authorized, err := listsKey(authorizedKeysFile(m.dir, m.user), wire)
	if err != nil {
		return nil, fmt.Errorf("authorized keys unreadable: %w", err)
	}
	if !authorized {
		return nil, errors.New("key not authorized")
	}
	return &ssh.Permissions{Extensions: map[string]string{"fingerprint": ssh.FingerprintSHA256(key)}}, nil
}

// maxKeysFile bounds what is read of a keys file: some thousand keys, far
// more than one machine's people ever had.
const maxKeysFile = 1 << 20

// listsKey reports whether the keys file at path (authorized_keys form)
// lists the key in wire form; a file that cannot be read whole is an error.
func listsKey(path string, wire []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFile+1))
	if err != nil {
		return false, err
	}
	if len(data) > maxKeysFile {
		return false, fmt.Errorf("%s is over %d bytes", path, maxKeysFile)
	}
	for rest := data; len(rest) > 0; {
		k, _, _, next, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return false, nil // no key in the rest of the file
		}
		if bytes.Equal(k.Marshal(), wire) {
			return true, nil
		}
		rest = next
	}
	return false, nil
}

// Close stops listening, closes every connection, ends their processes and
// waits (bounded) until all of it has finished. It keeps the folder.
func (m *builtin) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		conns := make([]net.Conn, 0, len(m.conns))
		for c := range m.conns {
			conns = append(conns, c)
		}
		m.mu.Unlock()

		m.cancel()
		err := m.ln.Close()
		for _, c := range conns {
			c.Close()
		}
		done := make(chan struct{})
		go func() { m.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeTimeout):
			err = errors.Join(err, fmt.Errorf("sessions still running %s after close", closeTimeout))
		}
		if err != nil {
			m.closeErr = fmt.Errorf("close builtin machine %s: %w", m.addr, err)
		}
		m.tmux.stop(m.log)
		m.homes.close()
		m.log.Debug("machine closed")
	})
	return m.closeErr
}

// Remount mounts what the record names on HOME (see homes).
func (m *builtin) Remount() error { return m.homes.remount() }

func (m *builtin) accept() {
	defer m.wg.Done()
	acceptLoop(m.ln, m.log, func(c net.Conn) bool {
		if !m.track(c) {
			c.Close()
			return false
		}
		m.wg.Add(1)
		go m.serveConn(c)
		return true
	})
}

// acceptLoop passes each connection ln accepts to handle, until ln is
// closed or handle returns false.
func acceptLoop(ln net.Listener, log *slog.Logger, handle func(net.Conn) bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("accept failed; machine stops listening", "err", err)
			}
			return
		}
		if !handle(c) {
			return
		}
	}
}

// track records a connection so Close can end it; it refuses once closed.
func (m *builtin) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *builtin) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *builtin) serveConn(c net.Conn) {
	defer m.wg.Done()
	defer m.untrack(c)
	defer c.Close()

	c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, m.config)
	if err != nil {
		m.log.Debug("handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	log := m.log.With("remote", c.RemoteAddr().String())
	log.Debug("connection authenticated", "user", sc.User(), "key", sc.Permissions.Extensions["fingerprint"])

	forwards := newRemoteForwards(m, sc, log)
	defer forwards.close()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		forwards.serve(reqs)
	}()

	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.serveSession(sc, nc, log)
			}()
		case "direct-tcpip":
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.forward(nc, log)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "unsupported channel type "+nc.ChannelType())
		}
	}
	log.Debug("connection closed")
}

// forward serves a direct-tcpip channel (ssh -L): it dials the requested
// address from the machine and bridges the two streams, half-closes included.
func (m *builtin) forward(nc ssh.NewChannel, log *slog.Logger) {
	var req struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if req.Port > 65535 {
		nc.Reject(ssh.ConnectionFailed, "port out of range")
		return
	}
	target := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	ctx, cancel := context.WithTimeout(m.ctx, dialTimeout)
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	log.Debug("forwarding", "target", target)
	m.bridge(ch, reqs, conn)
}
