package machine

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHomeFromConfig: a machine given Config.Home (an attached volume's
// folder) makes it the sessions' HOME and leaves Dir/home alone.
func TestHomeFromConfig(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(f.home()); err != nil {
			t.Fatal(err)
		}
		volume := filepath.Join(t.TempDir(), "volume")
		f.cfg.Home = volume
		f.start(t)
		r := f.ssh(t, f.user, f.kind.user, nil, `printf %s "$HOME" && echo kept > "$HOME/note"`)
		if r.code != 0 || r.stdout != volume {
			t.Fatalf("HOME %q (exit %d, stderr %q), want %q", r.stdout, r.code, r.stderr, volume)
		}
		if b, err := os.ReadFile(filepath.Join(volume, "note")); err != nil || string(b) != "kept\n" {
			t.Errorf("note in the volume: %q, %v", b, err)
		}
		if fi, err := os.Stat(volume); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("volume folder: %v, %v; want mode 0700", fi, err)
		}
		if _, err := os.Stat(f.home()); !os.IsNotExist(err) {
			t.Errorf("Dir/home exists beside the volume: %v", err)
		}
	})
}
