// Package bench measures the gateway against OpenSSH itself. One run builds
// the gateway binary (without the race detector), starts it in local mode
// with a machine that runs a real sshd, and then measures each figure both
// directly against that sshd and through the gateway, with the same client
// (OpenSSH's ssh), the same cipher (aes128-gcm@openssh.com) and the same key
// exchange (curve25519-sha256), and prints the ratios:
//
//	go test ./bench -run '^$' -bench . -benchtime 1x -timeout 30m
//
// The figures and what they mean are in docs/benchmarks.md. Nothing here
// runs in the normal test suite: there are only benchmarks.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proctree"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// harness is the gateway process, its machine and the person using both.
type harness struct {
	dir    string
	gw     *testkit.Process
	gwAddr string
	gwKey  gossh.PublicKey
	person gossh.Signer
	config string // ssh_config naming "gw" and "machine"
	ready  bool   // start succeeded
}

var (
	setupOnce sync.Once
	shared    *harness

	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.close()
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// gatewayBinary builds the gateway once per run, as people run it: without
// the race detector.
func gatewayBinary() (string, error) {
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "cc-gateway-bench-bin"); buildErr != nil {
			return
		}
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, "gateway"), "../cmd/gateway")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build gateway: %v\n%s", err, out)
		}
	})
	return filepath.Join(binDir, "gateway"), buildErr
}

// get returns the harness the benchmarks share, starting it on first use;
// TestMain closes it.
func get(b *testing.B) *harness {
	b.Helper()
	setupOnce.Do(func() {
		shared = &harness{}
		shared.start(b)
	})
	if !shared.ready {
		b.Fatal("the benchmark harness did not start: see the first benchmark's failure")
	}
	return shared
}

// start runs the gateway, with extra options if given, and a machine, and
// writes the ssh_config that reaches both; the caller closes h, even when
// start fails tb.
func (h *harness) start(tb testing.TB, extra ...string) {
	tb.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		tb.Fatal("the benchmarks need OpenSSH's sshd in /usr/sbin (Debian: openssh-server)")
	}
	user, err := machine.OpenSSHUser()
	if err != nil {
		tb.Fatal(err)
	}
	if h.dir, err = os.MkdirTemp("", "cc-gateway-bench"); err != nil {
		tb.Fatal(err)
	}
	bin, err := gatewayBinary()
	if err != nil {
		tb.Fatal(err)
	}
	gw := exec.Command(bin,
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(h.dir, "data"),
		"--host-key-dir", filepath.Join(h.dir, "hostkeys"),
		"--local-machines", "openssh", "--instance-user", user,
		"--machine-ssh-port", strconv.Itoa(localcloudtest.FreePort(tb)),
		"--log-level", "info",
		// BenchmarkIdleSessions is one person with many connections.
		"--max-connections", "1000",
		// The direct runs reach the machine itself: no firewall, so that
		// status shows its address.
		"--firewall-sources", "none",
	)
	gw.Args = append(gw.Args, extra...)
	gw.Env = append(os.Environ(), "HCLOUD_TOKEN=")
	logs, err := os.Create(filepath.Join(h.dir, "gateway.log"))
	if err != nil {
		tb.Fatal(err)
	}
	gw.Stdout, gw.Stderr = logs, logs
	if h.gw, err = testkit.StartProcess(gw); err != nil {
		tb.Fatal(err)
	}
	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	testkit.Eventually(tb, time.Minute, func() error {
		b, _ := os.ReadFile(logs.Name())
		m := listening.FindSubmatch(b)
		if m == nil {
			return errors.New("the gateway's log has no listening line")
		}
		h.gwAddr = string(m[1])
		return nil
	})
	h.gwKey = testkit.LoadKey(tb, filepath.Join(h.dir, "hostkeys", "ssh_host_ed25519_key")).Public()
	person := testkit.NewKey(tb)
	h.person = person.Signer
	keyPath := person.WriteFile(tb, filepath.Join(h.dir, "id_ed25519"))

	// The first connection creates the machine; the ssh_config for both
	// ways shares key, cipher and key exchange. (Left to its defaults
	// OpenSSH would pick a post-quantum key exchange with sshd that the
	// gateway does not offer, which alone costs ~100 ms per connection on
	// this kind of machine.)
	hosts := []testkit.Host{{Alias: "gw", Addr: h.gwAddr, HostKey: testkit.AuthorizedKey(h.gwKey)}}
	same := []string{"Ciphers aes128-gcm@openssh.com", "KexAlgorithms curve25519-sha256", "Compression no", "ControlMaster no"}
	h.config = testkit.WriteSSHConfig(tb, h.dir, user, keyPath, hosts, same...)
	out, err := h.ssh("gw", "true")
	if err == nil {
		out, err = h.ssh("gw", "status --json")
	}
	if err != nil {
		tb.Fatalf("create the machine: %v: %s", err, out)
	}
	var st struct {
		Address string `json:"address"`
		HostKey string `json:"host_key"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		tb.Fatalf("status --json: %v: %s", err, out)
	}
	hosts = append(hosts, testkit.Host{Alias: "machine", Addr: st.Address, HostKey: st.HostKey})
	h.config = testkit.WriteSSHConfig(tb, h.dir, user, keyPath, hosts, same...)
	h.ready = true
}

func (h *harness) close() {
	if h.gw != nil {
		h.gw.Stop(os.Interrupt, 30*time.Second)
	}
	if h.dir != "" {
		os.RemoveAll(h.dir)
	}
}

func (h *harness) command(host, remote string) *exec.Cmd {
	cmd := exec.Command("ssh", "-F", h.config, host, remote)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	return cmd
}

func (h *harness) ssh(host, remote string) ([]byte, error) {
	return h.command(host, remote).CombinedOutput()
}

// timed runs cmd and returns how long it took.
func timed(cmd *exec.Cmd) (time.Duration, error) {
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return d, nil
}

// alternate measures direct and proxied runs in turn, n each, so that
// whatever else the machine does affects both alike, and returns both lists.
func alternate(n int, run func(host string) (time.Duration, error)) (direct, proxied []time.Duration, err error) {
	for range n {
		for _, host := range []string{"machine", "gw"} {
			d, err := run(host)
			if err != nil {
				return nil, nil, err
			}
			if host == "machine" {
				direct = append(direct, d)
			} else {
				proxied = append(proxied, d)
			}
		}
	}
	return direct, proxied, nil
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

const gib = 1 << 30

// BenchmarkThroughput moves 1 GiB each way, direct and proxied, three
// times each, and reports the median throughput ratio (target ≥ 0.90).
func BenchmarkThroughput(b *testing.B) {
	h := get(b)
	for _, dir := range []string{"download", "upload"} {
		run := func(host string) (time.Duration, error) { return timed(h.transfer(dir, host)) }
		if _, _, err := alternate(1, run); err != nil { // warm-up
			b.Fatal(err)
		}
		cpu0, err := cpuTime(h.gw.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		direct, proxied, err := alternate(3, run)
		if err != nil {
			b.Fatal(err)
		}
		cpu1, err := cpuTime(h.gw.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		d, p := mibps(median(direct)), mibps(median(proxied))
		perGiB := (cpu1 - cpu0) / time.Duration(len(proxied))
		b.Logf("1 GiB %-8s direct %4.0f MiB/s, through the gateway %4.0f MiB/s: ratio %.2f (target >= 0.90); gateway CPU %.2fs per GiB",
			dir, d, p, p/d, perGiB.Seconds())
		b.ReportMetric(p/d, dir+"-ratio")
		b.ReportMetric(perGiB.Seconds(), dir+"-gateway-cpu-s/GiB")
	}
}

// BenchmarkThroughputOwnCore is BenchmarkThroughput with the gateway on a
// core of its own, as when it runs on its own host: the client and the
// machine's sshd (and everything it started) share CPU 0 in both runs, the
// gateway gets CPU 1. Where BenchmarkThroughput shows what the gateway costs
// when every process competes for two cores, this shows whether it keeps up
// when it does not have to.
func BenchmarkThroughputOwnCore(b *testing.B) {
	h := get(b)
	if runtime.NumCPU() < 2 {
		b.Skip("needs two CPUs")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		b.Skip("needs taskset (util-linux)")
	}
	sshd, err := h.sshdPID()
	if err != nil {
		b.Fatal(err)
	}
	pin := func(on bool) error {
		machineSide, gatewaySide := cpuSet(0), cpuSet(1)
		if !on {
			machineSide, gatewaySide = cpuSet(0, 1), cpuSet(0, 1)
		}
		descendants, err := proctree.Descendants(sshd)
		if err != nil {
			return err
		}
		for _, pid := range append([]int{sshd}, descendants...) {
			if err := setAffinity(pid, machineSide); err != nil {
				return err
			}
		}
		return setAffinity(h.gw.Cmd.Process.Pid, gatewaySide)
	}
	if err := pin(true); err != nil {
		b.Fatal(err)
	}
	defer pin(false)
	for _, dir := range []string{"download", "upload"} {
		run := func(host string) (time.Duration, error) {
			// Connections made earlier may have sshd processes that
			// predate the pinning; new ones inherit it.
			if err := pin(true); err != nil {
				return 0, err
			}
			return timed(h.transfer(dir, host, "taskset", "-c", "0"))
		}
		if _, _, err := alternate(1, run); err != nil {
			b.Fatal(err)
		}
		direct, proxied, err := alternate(3, run)
		if err != nil {
			b.Fatal(err)
		}
		d, p := mibps(median(direct)), mibps(median(proxied))
		b.Logf("1 GiB %-8s, gateway on its own core: direct %4.0f MiB/s, through the gateway %4.0f MiB/s: ratio %.2f (target >= 0.90)", dir, d, p, p/d)
		b.ReportMetric(p/d, dir+"-ratio")
	}
}

// transfer is the command that moves 1 GiB with ssh between this host and
// host, one way: "download" or "upload". Each end is /dev/zero or
// /dev/null, so nothing passes through this process. wrap, if given, is the
// command that runs it (taskset).
func (h *harness) transfer(dir, host string, wrap ...string) *exec.Cmd {
	args := []string{"ssh", "-F", h.config, host, fmt.Sprintf("head -c %d /dev/zero", gib)} // its stdout: /dev/null
	if dir == "upload" {
		args = []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero | ssh -F %s %s 'cat >/dev/null'", gib, h.config, host)}
	}
	args = append(wrap, args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	return cmd
}

// sshdPID reads the pid of the machine's sshd from its folder.
func (h *harness) sshdPID() (int, error) {
	files, err := filepath.Glob(filepath.Join(h.dir, "data", "localcloud", "machines", "*", "sshd.pid"))
	if err != nil || len(files) != 1 {
		return 0, fmt.Errorf("want one machine's sshd.pid, found %v (%v)", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func cpuSet(cpus ...int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// setAffinity pins every thread of a process to set.
func setAffinity(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil // the process has ended
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

func mibps(d time.Duration) float64 { return float64(gib) / (1 << 20) / d.Seconds() }

// BenchmarkConnect times `ssh HOST true` on the running machine, 21 times
// each way, and reports the ratio of the medians (target ≤ 1.25).
func BenchmarkConnect(b *testing.B) {
	h := get(b)
	run := func(host string) (time.Duration, error) { return timed(h.command(host, "true")) }
	if _, _, err := alternate(2, run); err != nil {
		b.Fatal(err)
	}
	direct, proxied, err := alternate(21, run)
	if err != nil {
		b.Fatal(err)
	}
	d, p := median(direct), median(proxied)
	b.Logf("ssh HOST true: direct median %s, through the gateway %s: ratio %.2f (target <= 1.25)", d.Round(time.Millisecond/10), p.Round(time.Millisecond/10), float64(p)/float64(d))
	b.ReportMetric(float64(p)/float64(d), "ratio")
}

// BenchmarkKeystroke sends single bytes through a terminal session to a
// program that echoes each one (dd bs=1 behind `stty raw`), and reports how
// much the gateway adds to the round trip at the median and the 99th
// percentile (target p99 < 2 ms).
func BenchmarkKeystroke(b *testing.B) {
	h := get(b)
	lat, err := keystrokes([]string{"machine", "gw"}, h.echo)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []float64{50, 99} {
		d, g := percentile(lat["machine"], p), percentile(lat["gw"], p)
		b.Logf("keystroke echo p%.0f: direct %s, through the gateway %s: added %s", p, d.Round(time.Microsecond), g.Round(time.Microsecond), (g - d).Round(time.Microsecond))
		b.ReportMetric(float64(g-d)/float64(time.Millisecond), fmt.Sprintf("added-p%.0f-ms", p))
	}
}

// keystrokes types 2000 keystrokes through each of the sessions echo
// opens by name, 1000 at a time, alternating between them, and returns each
// one's round trips.
func keystrokes(names []string, echo func(name string, n int) ([]time.Duration, error)) (map[string][]time.Duration, error) {
	const keys = 2000
	lat := map[string][]time.Duration{}
	for range 2 {
		for _, name := range names {
			ds, err := echo(name, keys/2)
			if err != nil {
				return nil, err
			}
			lat[name] = append(lat[name], ds...)
		}
	}
	return lat, nil
}

// echo times n keystrokes echoed by the machine.
func (h *harness) echo(host string, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", h.config, "-tt", host,
		fmt.Sprintf("stty raw -echo && echo ready && exec dd bs=1 count=%d status=none", n))
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer cmd.Wait()
	r := bufio.NewReader(stdout)
	if _, err := r.ReadString('\n'); err != nil {
		return nil, fmt.Errorf("echo session on %s: %w", host, err)
	}
	out := make([]time.Duration, 0, n)
	key := []byte{0}
	for i := range n {
		key[0] = 'a' + byte(i%26)
		t0 := time.Now()
		if _, err := stdin.Write(key); err != nil {
			return nil, err
		}
		got, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
		if got != key[0] {
			return nil, fmt.Errorf("typed %q, the terminal echoed %q", key[0], got)
		}
	}
	return out, nil
}

// BenchmarkIdleSessions opens 500 idle terminal sessions (a PTY and a
// program waiting for input), each on its own client connection, and
// reports the gateway's resident memory per session (target ≤ 256 KiB).
// "shared" is one person: their sessions share pooled connections to the
// machine, ten sessions each. "own" asks for agent forwarding, which gives
// every client connection its own connection to the machine: the cost when
// 500 different people each have one session.
func BenchmarkIdleSessions(b *testing.B) {
	const n = 500
	for _, c := range []struct {
		name  string
		agent bool
	}{{"shared", false}, {"own", true}} {
		// A gateway of its own: memory a process once used stays counted.
		h := &harness{}
		b.Cleanup(h.close)
		h.start(b)
		before, err := settledRSS(h.gw.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		clients, err := h.openIdle(n, c.agent)
		if err != nil {
			closeAll(clients)
			h.close()
			b.Fatal(err)
		}
		after, err := settledRSS(h.gw.Cmd.Process.Pid)
		closeAll(clients)
		h.close()
		if err != nil {
			b.Fatal(err)
		}
		per := float64(after-before) / n / 1024
		b.Logf("%d idle sessions (%s machine connections): gateway RSS %d MiB -> %d MiB, %.0f KiB per session (target <= 256)",
			n, c.name, before>>20, after>>20, per)
		b.ReportMetric(per, c.name+"-KiB/session")
	}
}

// openIdle opens n client connections with one idle terminal session each.
func (h *harness) openIdle(n int, withAgent bool) ([]*gossh.Client, error) {
	cfg := &gossh.ClientConfig{
		User: "person", Auth: []gossh.AuthMethod{gossh.PublicKeys(h.person)},
		HostKeyCallback: gossh.FixedHostKey(h.gwKey), Timeout: 30 * time.Second,
	}
	keyring := agent.NewKeyring()
	var (
		mu      sync.Mutex
		clients []*gossh.Client
		errs    []error
		wg      sync.WaitGroup
	)
	// A few at a time: sshd drops connections beyond MaxStartups (10)
	// that are still authenticating.
	slots := make(chan struct{}, 4)
	for range n {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			c, err := h.idleSession(cfg, keyring, withAgent)
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				clients = append(clients, c)
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return clients, errors.Join(errs...)
}

func (h *harness) idleSession(cfg *gossh.ClientConfig, keyring agent.Agent, withAgent bool) (*gossh.Client, error) {
	c, err := gossh.Dial("tcp", h.gwAddr, cfg)
	if err != nil {
		return nil, err
	}
	s, err := c.NewSession()
	if err != nil {
		return c, err
	}
	if withAgent {
		if err := agent.ForwardToAgent(c, keyring); err != nil {
			return c, err
		}
		if err := agent.RequestAgentForwarding(s); err != nil {
			return c, err
		}
	}
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		return c, err
	}
	if _, err := s.StdinPipe(); err != nil { // held open: cat waits
		return c, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		return c, err
	}
	if err := s.Start("echo ready; exec cat"); err != nil {
		return c, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		return c, fmt.Errorf("idle session did not start: %q, %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return c, nil
}

func closeAll(clients []*gossh.Client) {
	for _, c := range clients {
		c.Close()
	}
}

// cpuTime reads the CPU time (user and system) a process has used so far,
// from /proc/PID/stat, whose times count in clock ticks of 1/100 s.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid … utime stime: fields 14 and 15, counted
	// after the command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// rss reads a process's resident set size from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// settledRSS reads the resident size until two readings a second apart
// agree within 1% (the handshakes' garbage collected), for at most 20s.
func settledRSS(pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	for range 20 {
		time.Sleep(time.Second) // sampling interval
		now, err := rss(pid)
		if err != nil {
			return 0, err
		}
		if d := now - last; d < now/100 && -d < now/100 {
			return now, nil
		}
		last = now
	}
	return last, nil
}
