package testkit

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Host is one destination of an ssh_config: OpenSSH tools reach Addr
// (host:port) by the name Alias and accept only HostKey (authorized_keys
// form) from it.
type Host struct {
	Alias   string
	Addr    string
	HostKey string
}

// WriteSSHConfig writes dir/known_hosts and dir/ssh_config, so that any
// OpenSSH tool run with `-F CONFIG` reaches each host by its alias as user,
// with the key at keyPath only, without prompts, pinning host keys. extra
// lines (such as "ControlMaster no") apply to every host. It returns the
// ssh_config's path.
func WriteSSHConfig(t testing.TB, dir, user, keyPath string, hosts []Host, extra ...string) string {
	t.Helper()
	var known, conf strings.Builder
	for _, h := range hosts {
		host, port, err := net.SplitHostPort(h.Addr)
		if err != nil {
			t.Fatalf("address of %s: %v", h.Alias, err)
		}
		fmt.Fprintf(&known, "[%s]:%s %s\n", host, port, strings.TrimSpace(h.HostKey))
		fmt.Fprintf(&conf, "Host %s\n  HostName %s\n  Port %s\n", h.Alias, host, port)
	}
	knownPath := filepath.Join(dir, "known_hosts")
	fmt.Fprintf(&conf, `Host *
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  BatchMode yes
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  ConnectTimeout 20
  LogLevel ERROR
`, user, keyPath, knownPath)
	for _, line := range extra {
		fmt.Fprintf(&conf, "  %s\n", line)
	}
	path := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(knownPath, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago, for
// a server the test starts on loopback. Another process may take it
// meanwhile; in tests on one machine that is rare enough.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
