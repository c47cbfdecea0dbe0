package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// opensshClient runs the real ssh client against the front door.
type opensshClient struct {
	args []string
}

func newOpenSSHClient(t *testing.T, fd *frontDoor) *opensshClient {
	t.Helper()
	path, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("OpenSSH client not installed")
	}
	dir := t.TempDir()
	keyPath := testkit.NewKey(t).WriteFile(t, filepath.Join(dir, "id_ed25519"))
	config := testkit.WriteSSHConfig(t, dir, "person", keyPath, []testkit.Host{
		{Alias: "gw", Addr: fd.addr, HostKey: testkit.AuthorizedKey(fd.hostKey)},
	})
	return &opensshClient{args: []string{path, "-F", config, "gw"}}
}

func (c *opensshClient) run(t *testing.T, stdin []byte, remote string) (stdout, stderr []byte, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.args[0], append(c.args[1:], remote)...)
	var out, errOut bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatalf("ssh %q: %v", remote, err)
	}
	return out.Bytes(), errOut.Bytes(), status
}

func TestOpenSSHClient(t *testing.T) {
	_, fd := setup(t.Context(), t)
	ssh := newOpenSSHClient(t, fd)

	stdout, stderr, status := ssh.run(t, nil, "echo out; echo err >&2; exit 7")
	if status != 7 || string(stdout) != "out\n" || string(stderr) != "err\n" {
		t.Errorf("got status %d, stdout %q, stderr %q; want 7, \"out\\n\", \"err\\n\"", status, stdout, stderr)
	}

	// cat big | ssh gw sha256sum
	data := randomBytes(t, 4<<20)
	sum := sha256.Sum256(data)
	stdout, stderr, status = ssh.run(t, data, "sha256sum")
	if got := strings.Fields(string(stdout)); status != 0 || len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256sum through the gateway: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}

	stdout, _, status = ssh.run(t, nil, "head -c 3000000 /dev/urandom; exit 4")
	if status != 4 || len(stdout) != 3000000 {
		t.Errorf("got status %d and %d bytes, want 4 and 3000000", status, len(stdout))
	}
}

func TestOpenSSHClientUpstreamLost(t *testing.T) {
	m, fd := setup(t.Context(), t)
	ssh := newOpenSSHClient(t, fd)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ssh.args[0], append(ssh.args[1:], "echo ready; exec cat")...)
	stdin, err := cmd.StdinPipe() // held open: cat only ends with the connection
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	m.killAll(t)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 255 {
		t.Errorf("ssh ended with %v, want exit status 255", err)
	}
	if ctx.Err() != nil {
		t.Error("ssh hung until the test's deadline")
	}
	if !strings.Contains(stderr.String(), LostMessage) {
		t.Errorf("stderr %q, want %q", stderr.String(), LostMessage)
	}
}
