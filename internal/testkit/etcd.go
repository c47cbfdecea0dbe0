package testkit

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Etcd is a real etcd cluster a test runs on loopback: one etcd process
// per member (Debian's etcd-server), so a member can be killed and
// restarted without touching the test process, as quorum tests need.
type Etcd struct {
	Members []*EtcdMember
}

// EtcdMember is one member of an Etcd cluster.
type EtcdMember struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT (https with TLS), for clients
	t         testing.TB
	health    *http.Client // bounded; with TLS, presents the client certificate
	cmd       []string     // the etcd command line, the same at every start
	logs      *Buffer
	proc      *Process // nil while stopped
}

// etcdReady bounds the wait for a member to answer healthy: an election
// takes about a second, a busy machine a few.
const etcdReady = time.Minute

// etcdHealthTimeout bounds each health check.
const etcdHealthTimeout = 5 * time.Second

// StartEtcd starts a cluster of members (1 to 5) with fresh data folders on
// free loopback ports and waits until every member is healthy (the cluster
// has a leader). The test's end stops them.
func StartEtcd(t testing.TB, members int) *Etcd {
	t.Helper()
	return startEtcd(t, members, nil)
}

// startEtcd starts the cluster; with pki its members serve clients over
// TLS only and require a client certificate its CA signed.
func startEtcd(t testing.TB, members int, pki *etcdPKI) *Etcd {
	t.Helper()
	if members < 1 || members > 5 {
		t.Fatalf("StartEtcd: %d members; a test cluster has 1 to 5", members)
	}
	bin := Tool(t, "etcd")
	dir := t.TempDir()
	e := &Etcd{}
	var peers []string
	ports := freePorts(t, 2*members)
	peerURLs := make([]string, members)
	scheme, health := "http", &http.Client{Timeout: etcdHealthTimeout}
	var tlsFlags []string
	if pki != nil {
		scheme = "https"
		health.Transport = &http.Transport{TLSClientConfig: pki.client}
		tlsFlags = []string{"--cert-file=" + pki.serverCert, "--key-file=" + pki.serverKey,
			"--trusted-ca-file=" + pki.files.CA, "--client-cert-auth"}
	}
	for i := range members {
		name := "m" + strconv.Itoa(i)
		peerURLs[i] = "http://127.0.0.1:" + strconv.Itoa(ports[2*i])
		peers = append(peers, name+"="+peerURLs[i])
		e.Members = append(e.Members, &EtcdMember{
			Name: name, ClientURL: scheme + "://127.0.0.1:" + strconv.Itoa(ports[2*i+1]), t: t, logs: &Buffer{}, health: health,
		})
	}
	for i, m := range e.Members {
		m.cmd = []string{bin,
			"--name=" + m.Name,
			"--data-dir=" + filepath.Join(dir, m.Name),
			"--listen-client-urls=" + m.ClientURL, "--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + peerURLs[i], "--initial-advertise-peer-urls=" + peerURLs[i],
			"--initial-cluster=" + strings.Join(peers, ","),
			"--initial-cluster-state=new", "--initial-cluster-token=" + filepath.Base(dir),
			"--logger=zap", "--log-outputs=stderr", "--log-level=warn",
		}
		m.cmd = append(m.cmd, tlsFlags...)
		t.Cleanup(func() {
			m.Stop()
			if t.Failed() {
				t.Logf("etcd %s log:\n%s", m.Name, m.logs.String())
			}
		})
		m.spawn()
	}
	e.WaitHealthy()
	return e
}

// WaitHealthy waits until every running member says the cluster is
// healthy: after a member was killed, the survivors have elected a leader
// (if they can) and serve again.
func (e *Etcd) WaitHealthy() {
	for _, m := range e.Members {
		if m.proc != nil {
			m.waitHealthy()
		}
	}
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago: all are held until the last is found, so none comes twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Endpoints are the members' client URLs, for the etcd client.
func (e *Etcd) Endpoints() []string {
	urls := make([]string, len(e.Members))
	for i, m := range e.Members {
		urls[i] = m.ClientURL
	}
	return urls
}

func (m *EtcdMember) spawn() {
	m.t.Helper()
	cmd := exec.Command(m.cmd[0], m.cmd[1:]...)
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	proc, err := StartProcess(cmd)
	if err != nil {
		m.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.proc = proc
}

// Stop ends the member as a clean shutdown does (SIGTERM, then SIGKILL
// after a grace period); its data stays for Start. Stopping a stopped
// member does nothing.
func (m *EtcdMember) Stop() { m.end(syscall.SIGTERM) }

// Kill ends the member at once (SIGKILL), as a crash or a lost host does.
func (m *EtcdMember) Kill() { m.end(syscall.SIGKILL) }

func (m *EtcdMember) end(sig os.Signal) {
	if m.proc == nil {
		return
	}
	m.proc.Stop(sig, 30*time.Second)
	m.proc = nil
}

// Start restarts a stopped member on its data and ports, and waits until it
// is healthy: with quorum back, the cluster then serves again.
func (m *EtcdMember) Start() {
	m.t.Helper()
	if m.proc != nil {
		m.t.Fatalf("etcd %s is running already", m.Name)
	}
	m.spawn()
	m.waitHealthy()
}

// waitHealthy waits until the member says the cluster is healthy: it
// has a leader and a quorum behind it.
func (m *EtcdMember) waitHealthy() {
	m.t.Helper()
	proc := m.proc
	Eventually(m.t, etcdReady, func() error {
		select {
		case <-proc.Done():
			m.t.Fatalf("etcd %s exited: %v\n%s", m.Name, proc.Err(), m.logs.String())
		default:
		}
		return m.healthy()
	})
}

func (m *EtcdMember) healthy() error {
	resp, err := m.health.Get(m.ClientURL + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("etcd %s is not healthy: %s %s", m.Name, resp.Status, body)
	}
	return nil
}
