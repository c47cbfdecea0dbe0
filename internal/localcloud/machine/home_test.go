package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// testDevice is the home device of these tests' documents.
const testDevice = "/dev/disk/by-id/scsi-0HC_Volume_7"

// attachVolume links folder where the machine in dir finds device, as the
// local cloud does when it attaches a volume (the localcloud tests go
// through its API).
func attachVolume(t *testing.T, dir, device, folder string) {
	t.Helper()
	link := filepath.Join(dir, RootDir, device)
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(folder, link); err != nil {
		t.Fatal(err)
	}
}

func detachVolume(t *testing.T, dir, device string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, RootDir, device)); err != nil {
		t.Fatal(err)
	}
}

// homeOf runs a session as the fixture's person and returns its HOME and
// working folder, which must be the same.
func (f *fixture) homeOf(t *testing.T) string {
	t.Helper()
	r := f.ssh(t, f.user, f.kind.user, nil, `printf '%s\n' "$HOME" "$(pwd)"`)
	got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(got) != 2 || got[0] != got[1] {
		t.Fatalf("HOME and working folder %q: exit %d, stderr %q", got, r.code, r.stderr)
	}
	return got[0]
}

// TestHomeVolume: a machine whose document names a home device makes the
// attached volume's folder each session's HOME, seeded once with the login
// files and without the last machine's agent state; with the volume
// detached the next session's HOME is the machine's own, warned about
// once; attached again, the person's files are back. A machine whose
// document names no device keeps its own home, volume or not.
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
		attachVolume(t, f.cfg.Dir, testDevice, volume)
		f.start(t)

		if home := f.homeOf(t); home != volume {
			t.Fatalf("HOME %q, want the volume %q", home, volume)
		}
		if r := f.ssh(t, f.user, f.kind.user, nil, `echo kept > ~/x && mkdir -p "$(dirname ~/`+bootstrap.AgentStateFile+`)" && echo state > ~/`+bootstrap.AgentStateFile); r.code != 0 {
			t.Fatalf("write to the home: exit %d, stderr %q", r.code, r.stderr)
		}
		assertContent(t, filepath.Join(volume, "x"), "kept\n")
		assertContent(t, filepath.Join(volume, ".profile"), profile)
		if fi, err := os.Stat(volume); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("volume folder: %v, %v; want mode 0700", fi, err)
		}
		if _, err := os.Stat(filepath.Join(f.home(), "x")); !os.IsNotExist(err) {
			t.Errorf("the file is in the machine's own home too: %v", err)
		}
		// The home is the volume already: its agent state stays.
		f.homeOf(t)
		assertContent(t, filepath.Join(volume, bootstrap.AgentStateFile), "state\n")

		detachVolume(t, f.cfg.Dir, testDevice)
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
		attachVolume(t, f.cfg.Dir, testDevice, volume)
		r := f.ssh(t, f.user, f.kind.user, nil, `cat ~/x`)
		if r.code != 0 || r.stdout != "kept\n" {
			t.Errorf("the volume attached again: exit %d, stdout %q, stderr %q; want the file back", r.code, r.stdout, r.stderr)
		}
		assertContent(t, filepath.Join(volume, ".profile"), "# mine\n")
		if _, err := os.Stat(filepath.Join(volume, bootstrap.AgentStateFile)); !os.IsNotExist(err) {
			t.Errorf("the agent state of the volume's last use: %v, want it forgotten", err)
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
