package machine

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
)

// maxRemoteForwards bounds the remote forwards one connection may hold.
const maxRemoteForwards = 64

// forwardHost is where a machine's remote forwards listen: its own loopback
// address. sshd (GatewayPorts no) listens on loopback whatever address the
// client names, and each local machine's loopback is the 127.N.x.y address
// it serves SSH on, so forwards of different machines never collide.
func forwardHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() {
		return host
	}
	return "127.0.0.1"
}

// forwardKey names a remote forward as the client does: the address it
// asked for and the port the machine listens on.
type forwardKey struct {
	addr string
	port uint32
}

// remoteForwards are one connection's remote forwards (ssh -R).
type remoteForwards struct {
	m    *builtin
	conn *ssh.ServerConn
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[forwardKey]net.Listener
}

func newRemoteForwards(m *builtin, conn *ssh.ServerConn, log *slog.Logger) *remoteForwards {
	return &remoteForwards{m: m, conn: conn, log: log, listeners: make(map[forwardKey]net.Listener)}
}

// serve answers the connection's global requests until it ends: remote
// forwards are served, anything else (keepalive@openssh.com, …) gets the
// answer sshd gives to what it does not serve: no.
func (f *remoteForwards) serve(reqs <-chan *ssh.Request) {
	for req := range reqs {
		var ok bool
		var reply []byte
		switch req.Type {
		case "tcpip-forward":
			ok, reply = f.listen(req.Payload)
		case "cancel-tcpip-forward":
			ok = f.cancel(req.Payload)
		}
		if req.WantReply {
			req.Reply(ok, reply)
		}
	}
}

// listen serves tcpip-forward. For port 0 the reply holds the port chosen.
func (f *remoteForwards) listen(payload []byte) (bool, []byte) {
	var req struct {
		Addr string
		Port uint32
	}
	if ssh.Unmarshal(payload, &req) != nil || req.Port > 65535 {
		return false, nil
	}
	if !f.room() {
		return false, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(forwardHost(f.m.addr), strconv.Itoa(int(req.Port))))
	if err != nil {
		f.log.Debug("remote forward refused", "addr", req.Addr, "port", req.Port, "err", err)
		return false, nil
	}
	key := forwardKey{req.Addr, uint32(ln.Addr().(*net.TCPAddr).Port)}
	if !f.add(key, ln) {
		ln.Close()
		return false, nil
	}
	f.log.Debug("remote forward listening", "addr", req.Addr, "listen", ln.Addr().String())
	f.m.wg.Add(1)
	go func() {
		defer f.m.wg.Done()
		f.accept(ln, key)
	}()
	if req.Port == 0 {
		return true, ssh.Marshal(struct{ Port uint32 }{key.port})
	}
	return true, nil
}

// room reports whether the connection may hold one more forward.
func (f *remoteForwards) room() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.closed && len(f.listeners) < maxRemoteForwards
}

// add records a forward unless the connection has ended meanwhile.
func (f *remoteForwards) add(key forwardKey, ln net.Listener) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, taken := f.listeners[key]; taken || f.closed {
		return false
	}
	f.listeners[key] = ln
	return true
}

// cancel serves cancel-tcpip-forward.
func (f *remoteForwards) cancel(payload []byte) bool {
	var req struct {
		Addr string
		Port uint32
	}
	if ssh.Unmarshal(payload, &req) != nil {
		return false
	}
	key := forwardKey{req.Addr, req.Port}
	f.mu.Lock()
	ln, ok := f.listeners[key]
	delete(f.listeners, key)
	f.mu.Unlock()
	if ok {
		ln.Close()
	}
	return ok
}

// close ends every forward of a connection that has ended.
func (f *remoteForwards) close() {
	f.mu.Lock()
	f.closed = true
	lns := f.listeners
	f.listeners = nil
	f.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// accept passes each connection the forward accepts to the client as a
// forwarded-tcpip channel naming the forward as the client asked for it.
func (f *remoteForwards) accept(ln net.Listener, key forwardKey) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f.m.wg.Add(1)
		go func() {
			defer f.m.wg.Done()
			origin := c.RemoteAddr().(*net.TCPAddr)
			payload := ssh.Marshal(struct {
				Addr       string
				Port       uint32
				OriginAddr string
				OriginPort uint32
			}{key.addr, key.port, origin.IP.String(), uint32(origin.Port)})
			ch, reqs, err := f.conn.OpenChannel("forwarded-tcpip", payload)
			if err != nil {
				f.log.Debug("client refused a forwarded connection", "port", key.port, "err", err)
				c.Close()
				return
			}
			f.m.bridge(ch, reqs, c)
		}()
	}
}

// bridge joins a channel and a local stream until both directions have
// ended, half-closes included.
func (m *builtin) bridge(ch ssh.Channel, reqs <-chan *ssh.Request, conn net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(ch, conn)
		ch.CloseWrite()
	}()
	drained := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(drained)
		io.Copy(conn, ch)
		if hc, ok := conn.(interface{ CloseWrite() error }); ok {
			hc.CloseWrite()
		}
	}()
	// Once the client has closed the channel and what it sent has been
	// written, nothing can go its way any more: closing the local side
	// ends the copy that may still wait on it.
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ssh.DiscardRequests(reqs)
		<-drained
		conn.Close()
	}()
	wg.Wait()
	ch.Close()
	conn.Close()
}
