package machine

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// agentSocket is a session's forwarded agent (ssh -A): a Unix socket,
// private to the OS user, named by SSH_AUTH_SOCK in the session's
// environment. Each connection to it becomes an auth-agent@openssh.com
// channel to the client, as under sshd.
type agentSocket struct {
	dir  string
	path string
	ln   net.Listener
}

// listenAgent makes the session's agent socket and serves it until close.
func (s *session) listenAgent() (*agentSocket, error) {
	// sshd's place and naming: a private folder /tmp/ssh-XXXXXXXXXX.
	dir, err := os.MkdirTemp("", "ssh-")
	if err != nil {
		return nil, fmt.Errorf("agent socket folder: %w", err)
	}
	a := &agentSocket{dir: dir, path: filepath.Join(dir, "agent")}
	a.ln, err = net.Listen("unix", a.path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	s.m.wg.Add(1)
	go func() {
		defer s.m.wg.Done()
		for {
			c, err := a.ln.Accept()
			if err != nil {
				return
			}
			s.m.wg.Add(1)
			go func() {
				defer s.m.wg.Done()
				ch, reqs, err := s.conn.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					s.log.Debug("client refused an agent channel", "err", err)
					c.Close()
					return
				}
				s.m.bridge(ch, reqs, c)
			}()
		}
	}()
	return a, nil
}

// close stops serving the socket and removes it with its folder.
func (a *agentSocket) close() {
	a.ln.Close()
	os.RemoveAll(a.dir)
}
