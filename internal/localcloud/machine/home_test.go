package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// testDevice is the home device of these tests' documents.
const testDevice = "/dev/disk/by-id/scsi-0HC_Volume_7"

// attachVolume links folder where the machine in dir finds device, as the
// local cloud does when it attaches a volume (the localcloud tests go
// through its API), and has m, if running, remount as the cloud does.
func attachVolume(t *testing.T, m Machine, dir, device, folder string) {
	t.Helper()
	link := filepath.Join(dir, RootDir, device)
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(folder, link); err != nil {
		t.Fatal(err)
	}
	if m != nil {
		if err := m.Remount(); err != nil {
			t.Fatal(err)
		}
	}
}

func detachVolume(t *testing.T, m Machine, dir, device string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, RootDir, device)); err != nil {
		t.Fatal(err)
	}
	if err := m.Remount(); err != nil {
		t.Fatal(err)
	}
}

// homeOf runs a session as the fixture's person and returns the folder
// its HOME, always Dir/home, really is, where the session starts.
func (f *fixture) homeOf(t *testing.T) string {
	t.Helper()
	r := f.ssh(t, f.user, f.kind.user, nil, `printf '%s\n' "$HOME" "$(pwd -P)"`)
	got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(got) != 2 || got[0] != f.home() {
		t.Fatalf("HOME and working folder %q: exit %d, stderr %q; want HOME %s", got, r.code, r.stderr, f.home())
	}
	return got[1]
}

// TestHomeVolume: a machine whose document names a home device starts
// with the attached volume's folder mounted on HOME, seeded once with the
// login files and without the last machine's agent state; with the volume
// detached (and the machine told, as the cloud does) the next session's
// HOME is the machine's own, warned about once; attached again, the
// person's files are back; a restart starts with the own home and mounts
// again. A machine whose document names no
// device keeps its own home, volume or not.
func TestHomeVolume(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		f.m.Close()
		f.cfg.Doc.HomeDevice = testDevice
		log, logs := testkit.Logger()
		f.cfg.Logger = log
		volume := filepath.Join(t.TempDir(), "volume")
		if err := os.Mkdir(volume, 0o755); err != nil {
			t.Fatal(err)
		}
		attachVolume(t, nil, f.cfg.Dir, testDevice, volume)
		f.start(t)

		if home := f.homeOf(t); home != volume {
			t.Fatalf("HOME is %q, want the volume %q", home, volume)
		}
		if r := f.ssh(t, f.user, f.kind.user, nil, `echo kept > ~/x && mkdir -p "$(dirname ~/`+bootstrap.AgentStateFile+`)" && echo state > ~/`+bootstrap.AgentStateFile); r.code != 0 {
			t.Fatalf("write to the home: exit %d, stderr %q", r.code, r.stderr)
		}
		assertContent(t, filepath.Join(volume, "x"), "kept\n")
		assertContent(t, filepath.Join(volume, ".profile"), profile)
		if fi, err := os.Stat(volume); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("volume folder: %v, %v; want mode 0700", fi, err)
		}
		if _, err := os.Stat(filepath.Join(OwnHome(f.cfg.Dir), "x")); !os.IsNotExist(err) {
			t.Errorf("the file is in the machine's own home too: %v", err)
		}
		// The home is the volume already: its agent state stays.
		f.homeOf(t)
		assertContent(t, filepath.Join(volume, bootstrap.AgentStateFile), "state\n")

		detachVolume(t, f.m, f.cfg.Dir, testDevice)
		for range 2 {
			if home := f.homeOf(t); home != f.home() {
				t.Fatalf("HOME with the volume detached %q, want the machine's own %q", home, f.home())
			}
		}
		if n := strings.Count(logs.String(), "the recorded home volume is not attached"); n != 1 {
			t.Errorf("warned %d times of the missing volume, want once", n)
		}

		// A new .profile the person wrote is theirs: a volume is seeded
		// only when empty.
		if err := os.WriteFile(filepath.Join(volume, ".profile"), []byte("# mine\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		attachVolume(t, f.m, f.cfg.Dir, testDevice, volume)
		r := f.ssh(t, f.user, f.kind.user, nil, `cat ~/x`)
		if r.code != 0 || r.stdout != "kept\n" {
			t.Errorf("the volume attached again: exit %d, stdout %q, stderr %q; want the file back", r.code, r.stdout, r.stderr)
		}
		assertContent(t, filepath.Join(volume, ".profile"), "# mine\n")
		if _, err := os.Stat(filepath.Join(volume, bootstrap.AgentStateFile)); !os.IsNotExist(err) {
			t.Errorf("the agent state of the volume's last use: %v, want it forgotten", err)
		}

		f.m.Close()
		if own := OwnHome(f.cfg.Dir); own != filepath.Join(f.cfg.Dir, homeBeneath) {
			t.Errorf("own home of a closed machine with a volume mounted: %s", own)
		}
		f.start(t)
		if home := f.homeOf(t); home != volume {
			t.Errorf("HOME after a restart is %q, want the volume %q", home, volume)
		}

		// Powered on with a document naming no device, the machine
		// forgets the device and keeps its own home.
		f.m.Close()
		f.cfg.Doc.HomeDevice = ""
		f.start(t)
		if home := f.homeOf(t); home != f.home() {
			t.Errorf("HOME without a home device %q, want %q", home, f.home())
		}
	})
}

// TestPersonaliseMountsHomeVolume: a pool machine with the volume attached,
// personalised with a document naming it as the gateway does it (one
// connection, kept for the sessions that follow), has the volume as HOME
// in the very next session on that same connection. A mount that fails
// fails the personalisation, which the same document again retries.
func TestPersonaliseMountsHomeVolume(t *testing.T) {
	forPoolKinds(t, func(t *testing.T, f *fixture) {
		volume := t.TempDir()
		attachVolume(t, f.m, f.cfg.Dir, testDevice, volume)
		person := f.document(t, time.Time{}, f.user.Public(), f.gateway.Public())
		person.HomeDevice = testDevice
		rendered, err := person.Render()
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.dial(f.kind.user, f.gateway)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		run := func(stdin, command string) string {
			t.Helper()
			s := f.session(t, c)
			s.Stdin = strings.NewReader(stdin)
			out, err := s.CombinedOutput(command)
			if err != nil {
				t.Fatalf("%s: %v, output %q", command, err, out)
			}
			return string(out)
		}
		if got := run("", "pwd -P"); got != f.home()+"\n" {
			t.Fatalf("HOME of the pool machine is %q, want its own %s", got, f.home())
		}

		// Something in the way of the mount: the personalisation says so
		// and fails; the same document again, once it is gone, mounts.
		inTheWay := filepath.Join(f.cfg.Dir, homeBeneath)
		if err := os.Mkdir(inTheWay, 0o700); err != nil {
			t.Fatal(err)
		}
		s := f.session(t, c)
		s.Stdin = strings.NewReader(rendered)
		out, err := s.CombinedOutput(bootstrap.PersonaliseCommand)
		if err == nil || !strings.Contains(string(out), "personalised, but the home volume is not mounted: mount the home volume:") {
			t.Fatalf("personalise with the mount blocked: %v, output %q; want it to fail saying why", err, out)
		}
		if err := os.Remove(inTheWay); err != nil {
			t.Fatal(err)
		}
		run(rendered, bootstrap.PersonaliseCommand)
		if got := run("", "pwd -P"); got != volume+"\n" {
			t.Errorf("HOME after the personalisation is %q, want the volume %s", got, volume)
		}
	})
}
