package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestControlMasterExitStatus runs many short commands and scp uploads
// through one OpenSSH ControlMaster, as Ansible does with ControlPersist.
// The master closes a session as soon as it has seen EOF both ways, so an
// exit status the gateway sends after its EOF could be lost: the command
// would end with 255 and scp with 1.
func TestControlMasterExitStatus(t *testing.T) {
	r := newRig(t)
	ctl := filepath.Join(shortTempDir(t), "cm")
	// The first command starts the master, which stays in the background.
	if res := r.ssh(nil, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-o", "ControlPath="+ctl, "gw", "true"); res.code != 0 {
		t.Fatalf("first command through a new master: %+v", res)
	}
	t.Cleanup(func() { r.ssh(nil, "-o", "ControlPath="+ctl, "-O", "exit", "gw") })

	input := filepath.Join(r.dir, "input")
	writeRandom(t, input, 3000, 3)
	want := mustRead(t, input)
	const (
		commands = 300
		uploads  = 100
		parallel = 8
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range jobs {
				if i < commands {
					if code, stderr := r.muxRun(ctx, input, "ssh", "-F", r.config, "-o", "ControlPath="+ctl, "gw", "cat >/dev/null; exit 3"); code != 3 {
						fail("command %d: exit status %d, want 3 (stderr %q)", i, code, stderr)
					}
					continue
				}
				// An absolute path: the machine's sshd runs on this host.
				dest := filepath.Join(r.home, fmt.Sprintf("upload-%d", i))
				if code, stderr := r.muxRun(ctx, "", "scp", "-q", "-F", r.config, "-o", "ControlPath="+ctl, input, "gw:"+dest); code != 0 {
					fail("scp %d: exit status %d, want 0 (stderr %q)", i, code, stderr)
				}
				if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, want) {
					fail("scp %d: file on the machine differs (%d bytes, %v)", i, len(got), err)
				}
			}
		})
	}
	for i := range commands + uploads {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("commands did not finish within 3 minutes")
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d commands and uploads went wrong, for example:\n%s", len(failures), commands+uploads, failures[0])
		for _, f := range failures[1:min(len(failures), 5)] {
			t.Log(f)
		}
	}
}

// muxRun runs a tool to its end and returns its exit status and stderr; it
// is safe to call from any goroutine. stdin names a file, or is empty.
func (r *rig) muxRun(ctx context.Context, stdin string, name string, args ...string) (int, string) {
	cmd := r.command(ctx, nil, name, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return -1, err.Error()
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	code, err := exitStatus(cmd.Run())
	if err != nil {
		return -1, err.Error()
	}
	return code, errOut.String()
}
