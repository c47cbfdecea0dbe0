package main

// The keys on the allow list: what their signatures and options let in,
// through the real OpenSSH client.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestRSASignatures: an RSA key on the list gets in signing with SHA-2, and
// not when its client will only sign with SHA-1 (ssh-rsa), as with OpenSSH
// 8.8 and later.
func TestRSASignatures(t *testing.T) {
	dir := t.TempDir()
	rita := personWith(t, filepath.Join(dir, "rita"), testkit.NewRSAKey(t), "id_rsa")
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(rita.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	for _, algo := range []string{"rsa-sha2-256", "rsa-sha2-512"} {
		if r := rita.ssh(g, "", "-oPubkeyAcceptedAlgorithms="+algo, "status"); r.code != 0 {
			t.Errorf("signing with %s: code %d stderr %q; want in", algo, r.code, r.stderr)
		}
	}
	r := rita.ssh(g, "", "-oPubkeyAcceptedAlgorithms=ssh-rsa", "status")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("signing with ssh-rsa: code %d stderr %q; want refused", r.code, r.stderr)
	}
}

// TestKeyOptions: the options on a key's allow-list line hold, as sshd holds
// them in authorized_keys: from= and expiry-time= keep the key out, and
// restrict takes away what OpenSSH then reports as refused (a terminal, port
// forwards both ways, the agent), while a plain line keeps them all.
func TestKeyOptions(t *testing.T) {
	dir := t.TempDir()
	far := newPerson(t, filepath.Join(dir, "far"))
	tight := newPerson(t, filepath.Join(dir, "tight"))
	plain := newPerson(t, filepath.Join(dir, "plain"))
	users := filepath.Join(dir, "users")
	list := `from="10.9.9.9",expiry-time="20000101" ` + far.authorizedLine() + "\n" +
		"restrict " + tight.authorizedLine() + "\n" + plain.authorizedLine() + "\n"
	if err := os.WriteFile(users, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	if r := far.ssh(g, "", "status"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("from 127.0.0.1 with from=\"10.9.9.9\": code %d stderr %q; want refused", r.code, r.stderr)
	}

	// An agent to forward.
	sock := filepath.Join(shortTempDir(t), "agent")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	testkit.Eventually(t, 10*time.Second, func() error { // until ssh-agent listens
		_, err := os.Stat(sock)
		return err
	})

	t.Setenv("SSH_AUTH_SOCK", sock)
	// A terminal asked for with -t, refused, ends the session (OpenSSH
	// treats it as fatal); the agent is refused silently, as by sshd.
	session := []string{"-tt", "-A", `tty; echo "agent ${SSH_AUTH_SOCK:-none}"`}
	r := plain.ssh(g, "", session...)
	if r.code != 0 || !strings.Contains(r.stdout, "/dev/") || strings.Contains(r.stdout, "agent none") {
		t.Fatalf("plain line: code %d stdout %q stderr %q; want a terminal and an agent", r.code, r.stdout, r.stderr)
	}
	r = tight.ssh(g, "", session...)
	if r.code != 255 || !strings.Contains(r.stderr, "PTY allocation request failed") || strings.Contains(r.stdout, "/dev/") {
		t.Errorf("restrict, ssh -tt: code %d stdout %q stderr %q; want the terminal refused", r.code, r.stdout, r.stderr)
	}
	r = tight.ssh(g, "", "-A", `echo "agent ${SSH_AUTH_SOCK:-none}"`)
	if r.code != 0 || !strings.Contains(r.stdout, "agent none") {
		t.Errorf("restrict, ssh -A: code %d stdout %q stderr %q; want no agent", r.code, r.stdout, r.stderr)
	}

	echo := testkit.EchoServer(t).Addr().String()
	if r := plain.ssh(g, "hello\n", "-W"+echo); r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("plain line, ssh -W: code %d stdout %q stderr %q; want the echo", r.code, r.stdout, r.stderr)
	}
	r = tight.ssh(g, "hello\n", "-W"+echo)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "stdio forwarding failed") {
		t.Errorf("restrict, ssh -W: code %d stdout %q stderr %q; want the channel refused", r.code, r.stdout, r.stderr)
	}
	r = tight.ssh(g, "", "-oExitOnForwardFailure=yes", "-R0:127.0.0.1:9", "echo", "forwarding")
	if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") || strings.Contains(r.stdout, "forwarding") {
		t.Errorf("restrict, ssh -R: code %d stdout %q stderr %q; want the forward refused", r.code, r.stdout, r.stderr)
	}
	r = plain.ssh(g, "", "-oExitOnForwardFailure=yes", "-R0:127.0.0.1:9", "echo", "forwarding")
	if r.code != 0 || !strings.Contains(r.stdout, "forwarding") {
		t.Errorf("plain line, ssh -R: code %d stdout %q stderr %q; want the forward", r.code, r.stdout, r.stderr)
	}
}

// TestRevocation: a key removed from the allow list (in an edit that also
// adds a bad line) loses its open session, told why in one line, cannot
// come back, and its machine is stopped (the default --revoked-action); the
// audit log records it. The key left on the list keeps its access.
func TestRevocation(t *testing.T) {
	dir := t.TempDir()
	carol := newPerson(t, filepath.Join(dir, "carol"))
	dave := newPerson(t, filepath.Join(dir, "dave"))
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(carol.authorizedLine()+"\n"+dave.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	ended := make(chan result, 1)
	go func() { ended <- carol.ssh(g, "", "echo ready; sleep 120") }()
	testkit.Eventually(t, time.Minute, func() error { // until carol's session is live
		if st := carol.status(g); st.Sessions != 1 {
			return fmt.Errorf("carol has %d sessions", st.Sessions)
		}
		return nil
	})

	edit := "ssh-dss AAAAB3NzaC1kc3M= an old DSA key\n" + dave.authorizedLine() + "\n"
	if err := os.WriteFile(users, []byte(edit), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Cmd.Process.Signal(syscall.SIGHUP)
	select {
	case r := <-ended:
		if r.code != 255 || !strings.Contains(r.stderr, "cc-gateway: your key was removed from the gateway's allow list") {
			t.Errorf("carol's session after her key was removed: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatal("carol's session still runs a minute after her key was removed")
	}
	if r := carol.ssh(g, "", "status"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("carol after removal: code %d stderr %q; want refused", r.code, r.stderr)
	}
	testkit.Eventually(t, time.Minute, func() error { // until carol's machine is stopped
		servers, err := cloudClient(t, lg).Server.All(context.Background())
		if err != nil {
			return err
		}
		if len(servers) != 1 || servers[0].Status != hcloud.ServerStatusOff {
			return fmt.Errorf("%d servers, want carol's, off", len(servers))
		}
		return nil
	})
	if !strings.Contains(g.logs.String(), "msg=revoke ") || !strings.Contains(g.logs.String(), "line=1") {
		t.Errorf("the log has no revoke event or no skipped line:\n%s", g.logs.String())
	}
	if r := dave.ssh(g, "", "status"); r.code != 0 {
		t.Errorf("dave, still listed: code %d stderr %q", r.code, r.stderr)
	}
}

// TestRevocationKeep: with --revoked-action keep, a removed key's machine
// keeps running, and the key no longer logs in to it directly (real sshd,
// as a Hetzner server's public address would allow), while the gateway's
// own key still does.
func TestRevocationKeep(t *testing.T) {
	dir := t.TempDir()
	user := localcloudtest.OpenSSHUser(t)
	carol := newPerson(t, filepath.Join(dir, "carol"))
	users := writeKeyList(t, filepath.Join(dir, "users"), carol)
	// No firewall: status shows the machine's address, to reach it directly.
	lg := newLocalGateway(t, "--users", users, "--revoked-action", "keep",
		"--local-machines", "openssh", "--instance-user", user, "--firewall-sources", "none")
	g := lg.start(t)
	if r := carol.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("first connection: %+v", r)
	}
	st := carol.status(g)
	// One client config per key, each trying only its key.
	direct := func(keyPath, name string) result {
		t.Helper()
		return directLogin(t, filepath.Join(dir, name), user, keyPath, st)
	}
	gatewayKey := filepath.Join(lg.dir, "data", "upstream_ed25519_key")
	if r := direct(carol.keyPath, "carol-direct"); r.code != 0 || r.stdout != "in\n" {
		t.Fatalf("carol, directly to her machine before the removal: %+v", r)
	}

	if err := os.WriteFile(users, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Cmd.Process.Signal(syscall.SIGHUP)
	testkit.Eventually(t, time.Minute, func() error {
		if !strings.Contains(g.logs.String(), `detail="key revoked on server`) {
			return fmt.Errorf("no revocation on the machine in the log yet")
		}
		return nil
	})
	if r := direct(carol.keyPath, "carol-direct"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("carol, directly to her kept machine after the removal: %+v; want refused", r)
	}
	if r := direct(gatewayKey, "gateway-direct"); r.code != 0 || r.stdout != "in\n" {
		t.Errorf("the gateway's key on the machine after the removal: %+v", r)
	}
	servers, err := cloudClient(t, lg).Server.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 || servers[0].Status != hcloud.ServerStatusRunning {
		t.Errorf("servers after the removal: %d; want carol's, kept running", len(servers))
	}
}
