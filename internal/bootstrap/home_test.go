package bootstrap

// These tests follow a person's home volume on the machine: the bootstrap
// script records the document's home device, and the home unit's script
// (home.sh) formats the volume once and mounts it. The volumes are regular
// files holding real filesystems: blkid, wipefs, mkfs.ext4 and debugfs run
// for real on them. Only mount, mountpoint, sleep and systemctl, which need
// root, a loop device or a running systemd, are stand-ins on PATH.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// homeScriptPath is the home unit's script of the NixOS image.
const homeScriptPath = "../../nix/modules/cloud-instance/home.sh"

// homeRecord is where the bootstrap script records the home device.
const homeRecord = "var/lib/cloud-instance/home-device"

// volumeDevice is the device path of the test volumes.
const volumeDevice = "/dev/disk/by-id/scsi-0HC_Volume_4711"

// volumeSize is the size of a test volume: small, and over the MiB that
// home.sh reads to see that a volume is empty.
const volumeSize = 8 << 20

// stubs puts scripts named for commands first on PATH and returns the
// environment entry, with the system folders where blkid and mkfs live
// (a user's PATH may lack them).
func stubs(t *testing.T, scripts map[string]string) (dir, env string) {
	t.Helper()
	dir = t.TempDir()
	for name, body := range scripts {
		writeFile(t, filepath.Join(dir, name), "#!/bin/sh\n"+body, 0o755)
	}
	return dir, "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH") + ":/usr/sbin:/sbin"
}

// systemctlStub is a systemctl that logs its arguments to the file calls
// and exits with the status in the file status (0 if there is none).
const systemctlStub = `d=$(dirname "$0")
echo "$*" >>"$d/calls"
[ ! -f "$d/status" ] || exit "$(cat "$d/status")"
`

func readOr(t *testing.T, path, none string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return none
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScriptRecordsHomeDevice: boot mode records a document's home device
// for the home unit, root's alone, and forgets it when a later document
// names none.
func TestScriptRecordsHomeDevice(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	expires := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	d := newDoc(t, "h1", "cc-h1", "claude", expires, 22, testkit.NewKey(t).Public())
	d.HomeDevice = volumeDevice
	before := snapshot(t, m.root)
	if res := m.run(t, dash, serveUserData(t, render(t, d), true)); res.code != 0 {
		t.Fatalf("boot with a home device: exit status %d", res.code)
	}
	want := applied(before, d, d.ExpiresAt)
	want[homeRecord] = fileEntry(0o600, volumeDevice+"\n")
	compareTrees(t, snapshot(t, m.root), want)

	later := newDoc(t, "h1", "cc-h1", "claude", expires, 22, testkit.NewKey(t).Public())
	before = snapshot(t, m.root)
	if res := m.run(t, dash, serveUserData(t, render(t, later), true)); res.code != 0 {
		t.Fatalf("boot without a home device: exit status %d", res.code)
	}
	want = applied(before, later, later.ExpiresAt)
	delete(want, homeRecord)
	compareTrees(t, snapshot(t, m.root), want)
}

// TestScriptPersonalisesHome: a pool machine claimed by a person with a
// home volume records it and starts the home unit after applying the
// document; when the unit fails, so does personalising, and the same
// document again starts it again.
func TestScriptPersonalisesHome(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	p := newPoolSet(t, "h4")
	pooled := bootPool(t, m, p)
	dir, path := stubs(t, map[string]string{"systemctl": systemctlStub})
	unit := "CLOUD_INSTANCE_HOME_UNIT=cloud-instance-home.service"
	writeFile(t, filepath.Join(dir, "status"), "1\n", 0o644)

	person := p.person(t, time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
	person.HomeDevice = volumeDevice
	sent := render(t, person)
	for _, bad := range []string{"cloud-instance-home", "--user.service", "a;reboot.service", "Home.service"} {
		res := m.runMode(t, dash, personaliseArgs, []byte(sent), path, "CLOUD_INSTANCE_HOME_UNIT="+bad)
		if res.code == 0 || !strings.Contains(res.stderr, "CLOUD_INSTANCE_HOME_UNIT is not a unit name") {
			t.Fatalf("home unit %q: exit status %d, want it refused", bad, res.code)
		}
		compareTrees(t, snapshot(t, m.root), pooled)
	}
	res := m.runMode(t, dash, personaliseArgs, []byte(sent), path, unit)
	if res.code == 0 || !strings.Contains(res.stderr, "its home volume "+volumeDevice+" is not mounted") {
		t.Fatalf("personalise with a failing home unit: exit status %d, want it to fail, saying the home is not mounted", res.code)
	}
	done := personalised(pooled, person, sent)
	done[homeRecord] = fileEntry(0o600, volumeDevice+"\n")
	compareTrees(t, snapshot(t, m.root), done)

	os.Remove(filepath.Join(dir, "status"))
	res = m.runMode(t, dash, personaliseArgs, []byte(sent), path, unit)
	if res.code != 0 {
		t.Fatalf("the same document again: exit status %d, want 0", res.code)
	}
	compareTrees(t, snapshot(t, m.root), done)
	calls := "start cloud-instance-home.service\n"
	if got := readOr(t, filepath.Join(dir, "calls"), ""); got != calls+calls {
		t.Errorf("systemctl ran with %q, want %q twice", got, calls)
	}

	// Powered off and on again with the pool user_data: the saved
	// personalisation, home device and all, is what applies.
	if res := m.run(t, dash, serveUserData(t, render(t, p.pool), true)); res.code != 0 {
		t.Fatalf("reboot: exit status %d", res.code)
	}
	compareTrees(t, snapshot(t, m.root), done)
}

// TestScriptPersonalisesWithoutHomeUnit: with no home volume, personalising
// starts no unit; where no home unit is named (the local cloud's
// machines), a home device is only recorded.
func TestScriptPersonalisesWithoutHomeUnit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, device, unit string
	}{
		{name: "no home volume", unit: "CLOUD_INSTANCE_HOME_UNIT=cloud-instance-home.service"},
		{name: "no home unit", device: volumeDevice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			p := newPoolSet(t, "h5")
			pooled := bootPool(t, m, p)
			dir, path := stubs(t, map[string]string{"systemctl": systemctlStub})
			person := p.person(t, time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
			person.HomeDevice = tc.device
			sent := render(t, person)
			if res := m.runMode(t, dash, personaliseArgs, []byte(sent), path, tc.unit); res.code != 0 {
				t.Fatalf("personalise: exit status %d", res.code)
			}
			done := personalised(pooled, person, sent)
			if tc.device != "" {
				done[homeRecord] = fileEntry(0o600, tc.device+"\n")
			}
			compareTrees(t, snapshot(t, m.root), done)
			if got := readOr(t, filepath.Join(dir, "calls"), ""); got != "" {
				t.Errorf("systemctl ran with %q, want it not run", got)
			}
		})
	}
}

// homeMachine is a machine for home.sh: the instance user's home as the
// image made it, the stand-ins for mount, mountpoint and sleep, and a
// recorded home device.
type homeMachine struct {
	*machine
	stubs string // the stand-ins' folder: mounts logs mount's arguments
	path  string
}

// The stand-ins: mount logs its arguments and marks its target mounted,
// mountpoint answers from those marks, and sleep runs the file on-sleep
// when there is one (a device appearing while the script waits) and
// counts its calls.
const (
	mountStub = `d=$(dirname "$0")
echo "$*" >>"$d/mounts"
for last; do :; done
echo "$last" >>"$d/mounted"
`
	mountpointStub = `d=$(dirname "$0")
[ "$1" = -q ] || exit 2
[ -f "$d/mounted" ] && grep -qxF "$2" "$d/mounted"
`
	sleepStub = `d=$(dirname "$0")
echo "$*" >>"$d/sleeps"
[ ! -f "$d/on-sleep" ] || . "$d/on-sleep"
`
)

func newHomeMachine(t *testing.T, device string) *homeMachine {
	t.Helper()
	m := &homeMachine{machine: newMachine(t)}
	m.stubs, m.path = stubs(t, map[string]string{"mount": mountStub, "mountpoint": mountpointStub, "sleep": sleepStub})
	home := filepath.Join(m.root, "home/claude")
	for _, d := range []string{"home/claude/.config/git", "var/lib/cloud-instance", "dev/disk/by-id"} {
		if err := os.MkdirAll(filepath.Join(m.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(home, ".zshrc"), "# made by the image\n", 0o644)
	writeFile(t, filepath.Join(home, ".config/git/config"), "[init]\n\tdefaultBranch = main\n", 0o600)
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if owners() {
		for _, p := range []string{home, home + "/.zshrc", home + "/.config", home + "/.config/git", home + "/.config/git/config"} {
			if err := os.Lchown(p, instanceUID, instanceGID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if device != "" {
		writeFile(t, filepath.Join(m.root, homeRecord), device+"\n", 0o600)
	}
	return m
}

// volume is where the volume of the recorded device is under the root.
func (m *homeMachine) volume() string {
	return filepath.Join(m.root, volumeDevice)
}

// attach makes an empty volume appear, as a new Hetzner volume reads.
func (m *homeMachine) attach(t *testing.T) {
	t.Helper()
	f, err := os.Create(m.volume())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(volumeSize); err != nil {
		t.Fatal(err)
	}
}

func (m *homeMachine) runHome(t *testing.T, env ...string) scriptResult {
	t.Helper()
	return m.runScript(t, homeScriptPath, dash, nil, nil, append([]string{m.path, "CLOUD_INSTANCE_HOME_WAIT=5"}, env...)...)
}

// mounts is what mount was run with, one line a run.
func (m *homeMachine) mounts(t *testing.T) string {
	t.Helper()
	return readOr(t, filepath.Join(m.stubs, "mounts"), "")
}

// reboot forgets what was mounted.
func (m *homeMachine) reboot(t *testing.T) {
	t.Helper()
	if err := os.Remove(filepath.Join(m.stubs, "mounted")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// debugfs runs a read-only debugfs request on the volume.
func (m *homeMachine) debugfs(t *testing.T, request string) string {
	t.Helper()
	out, err := exec.Command(sbinTool(t, "debugfs"), "-R", request, m.volume()).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

// blkid reports what blkid finds on the volume, as KEY=value lines.
func (m *homeMachine) blkid(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(sbinTool(t, "blkid"), "-p", "-o", "export", m.volume()).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", m.volume(), err)
	}
	return string(out)
}

// sbinTool finds a tool that a user's PATH may not reach.
func sbinTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin") {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Fatalf("%s is not installed; install it (Debian: apt-get install e2fsprogs util-linux), as .ci/run does", name)
	return ""
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// mountLine is what home.sh runs mount with for the volume on the home.
func (m *homeMachine) mountLine() string {
	return "-t ext4 -o nodev,nosuid,noatime,errors=remount-ro " + m.volume() + " " + filepath.Join(m.root, "home/claude") + "\n"
}

// TestHomeFormatsOnceAndMounts: an empty volume is formatted ext4 once,
// seeded with the image's home for the instance user, and mounted by its
// stable path, and the agent's state on it is forgotten; the script started
// again changes nothing; after a reboot the volume, with the person's files
// on it, is mounted again, not formatted.
func TestHomeFormatsOnceAndMounts(t *testing.T) {
	t.Parallel()
	m := newHomeMachine(t, volumeDevice)
	m.attach(t)
	stateFile := "/home/claude/.local/state/cc-gateway/agent"
	agentState := "CLOUD_INSTANCE_AGENT_STATE=" + stateFile
	res := m.runHome(t, "CLOUD_INSTANCE_AGENT_STATE=/home/claude/../../etc/passwd")
	if res.code == 0 || !strings.Contains(res.stderr, "CLOUD_INSTANCE_AGENT_STATE is not a file in /home/claude") {
		t.Fatalf("an agent state outside the home: exit status %d, want it refused", res.code)
	}
	if got := m.mounts(t); got != "" {
		t.Fatalf("mount ran with %q", got)
	}
	// What the agent said last on the volume's last machine, as the mount
	// would show it (mount here is a stand-in).
	stale := filepath.Join(m.root, stateFile)
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, stale, "working\n", 0o644)

	res = m.runHome(t, agentState)
	if res.code != 0 || !strings.Contains(res.stderr, "formatting it ext4") {
		t.Fatalf("first start: exit status %d, want the volume formatted", res.code)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the agent's state on the mounted home is still there (%v)", err)
	}
	if got := m.mounts(t); got != m.mountLine() {
		t.Errorf("mount ran with %q, want %q", got, m.mountLine())
	}
	probe := m.blkid(t)
	if !strings.Contains(probe, "\nTYPE=ext4\n") || !strings.Contains(probe, "\nLABEL=home\n") {
		t.Errorf("blkid finds %q, want ext4 labelled home", probe)
	}
	// The image's home, copied, the instance user's, with the home's mode.
	if got := m.debugfs(t, "cat /.zshrc"); got != "# made by the image\n" {
		t.Errorf("the volume's .zshrc holds %q", got)
	}
	if got := m.debugfs(t, "cat /.config/git/config"); got != "[init]\n\tdefaultBranch = main\n" {
		t.Errorf("the volume's .config/git/config holds %q", got)
	}
	rootInode := m.debugfs(t, "stat /")
	owner := fmt.Sprintf(`User:\s+%d\s+Group:\s+%d\b`, instanceUID, instanceGID)
	if !regexp.MustCompile(`Mode:\s+0700\b`).MatchString(rootInode) || !regexp.MustCompile(owner).MatchString(rootInode) {
		t.Errorf("the volume's root is not mode 0700, owned by %d:%d:\n%s", instanceUID, instanceGID, rootInode)
	}
	if owners() {
		zshrc := m.debugfs(t, "stat /.zshrc")
		if !regexp.MustCompile(owner).MatchString(zshrc) {
			t.Errorf("the volume's .zshrc is not owned by %d:%d:\n%s", instanceUID, instanceGID, zshrc)
		}
	}

	// An agent runs now: starting the unit again must not forget it.
	writeFile(t, stale, "working\n", 0o644)
	res = m.runHome(t, agentState)
	if res.code != 0 || !strings.Contains(res.stderr, "mounted already; nothing to do") {
		t.Fatalf("started again: exit status %d, want nothing done", res.code)
	}
	assertFile(t, stale, "working\n")
	if got := m.mounts(t); got != m.mountLine() {
		t.Errorf("started again, mount ran with %q, want only the first %q", got, m.mountLine())
	}

	// The person works; the machine goes, and a new one gets the volume.
	cmd := exec.Command(sbinTool(t, "debugfs"), "-w", "-R", "mkdir /work", m.volume())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs mkdir: %v\n%s", err, out)
	}
	m.reboot(t)
	res = m.runHome(t)
	if res.code != 0 || strings.Contains(res.stderr, "formatting") {
		t.Fatalf("after a reboot: exit status %d, want the volume mounted without formatting it", res.code)
	}
	if got := m.blkid(t); got != probe {
		t.Errorf("after a reboot blkid finds %q, want the filesystem of the first format %q", got, probe)
	}
	if got := m.debugfs(t, "ls /"); !strings.Contains(got, "work") {
		t.Errorf("the person's folder is gone: ls / = %q", got)
	}
	if got := m.mounts(t); got != m.mountLine()+m.mountLine() {
		t.Errorf("mount ran with %q, want %q twice", got, m.mountLine())
	}
}

// TestHomeLeavesOthersAlone: a volume that holds anything but ext4, or
// anything at all when no tool names it, is never formatted nor mounted,
// and the script says what it holds.
func TestHomeLeavesOthersAlone(t *testing.T) {
	t.Parallel()
	// A DOS partition table: one Linux partition from sector 2048, and
	// the boot signature.
	dos := make([]byte, 512)
	copy(dos[446:], []byte{0, 0, 2, 0, 0x83, 0, 0, 0, 0, 8, 0, 0, 0, 0x10, 0, 0})
	dos[510], dos[511] = 0x55, 0xaa
	tests := []struct {
		name   string
		make   func(t *testing.T, volume string)
		reason string
	}{
		{"a partition table", func(t *testing.T, volume string) { writeAt(t, volume, 0, dos) },
			"holds PTTYPE=dos, not an ext4 filesystem"},
		{"swap", func(t *testing.T, volume string) { runTool(t, "mkswap", volume) },
			"holds TYPE=swap, not an ext4 filesystem"},
		{"ext2", func(t *testing.T, volume string) { runTool(t, "mke2fs", "-q", "-t", "ext2", volume) },
			"holds TYPE=ext2, not an ext4 filesystem"},
		{"data no tool names", func(t *testing.T, volume string) {
			writeAt(t, volume, 300<<10, bytes.Repeat([]byte("unpushed work\n"), 100))
		}, "holds data no tool recognises"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newHomeMachine(t, volumeDevice)
			m.attach(t)
			tt.make(t, m.volume())
			before, err := os.ReadFile(m.volume())
			if err != nil {
				t.Fatal(err)
			}
			res := m.runHome(t)
			if res.code == 0 || !strings.Contains(res.stderr, tt.reason) {
				t.Fatalf("exit status %d, want a failure saying the volume %s", res.code, tt.reason)
			}
			after, err := os.ReadFile(m.volume())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("the volume was changed")
			}
			if got := m.mounts(t); got != "" {
				t.Errorf("mount ran with %q", got)
			}
		})
	}
}

func writeAt(t *testing.T, path string, offset int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, offset); err != nil {
		t.Fatal(err)
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(sbinTool(t, name), args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestHomeWaitsForTheDevice: the script waits, a bounded number of
// seconds, for the volume to appear; one that appears meanwhile is
// formatted and mounted, one that never does is not, and the script fails
// saying so.
func TestHomeWaitsForTheDevice(t *testing.T) {
	t.Parallel()
	t.Run("appears", func(t *testing.T) {
		t.Parallel()
		m := newHomeMachine(t, volumeDevice)
		// Attached while the script sleeps for the second time.
		writeFile(t, filepath.Join(m.stubs, "on-sleep"), fmt.Sprintf(
			"if [ \"$(wc -l <\"$d/sleeps\")\" -eq 2 ]; then truncate -s %d '%s'; fi\n", volumeSize, m.volume()), 0o644)
		res := m.runHome(t)
		if res.code != 0 || !strings.Contains(res.stderr, "waiting up to 5 s for the home volume "+volumeDevice) {
			t.Fatalf("exit status %d, want the volume waited for, then mounted", res.code)
		}
		if got := readOr(t, filepath.Join(m.stubs, "sleeps"), ""); got != "1\n1\n" {
			t.Errorf("slept %q, want one second twice", got)
		}
		if got := m.mounts(t); got != m.mountLine() {
			t.Errorf("mount ran with %q, want %q", got, m.mountLine())
		}
	})
	t.Run("never appears", func(t *testing.T) {
		t.Parallel()
		m := newHomeMachine(t, volumeDevice)
		res := m.runHome(t, "CLOUD_INSTANCE_HOME_WAIT=3")
		if res.code == 0 || !strings.Contains(res.stderr, "<3>cloud-instance-home: the home volume "+volumeDevice+" did not appear within 3 s") ||
			!strings.Contains(res.stderr, "not mounting anything") {
			t.Fatalf("exit status %d, want a failure saying the volume never appeared", res.code)
		}
		if got := readOr(t, filepath.Join(m.stubs, "sleeps"), ""); got != "1\n1\n1\n" {
			t.Errorf("slept %q, want one second three times", got)
		}
		if got := m.mounts(t); got != "" {
			t.Errorf("mount ran with %q", got)
		}
	})
}

// TestHomeWithoutAVolume: without a recorded device the home stays on the
// machine's disk; a recorded device of any other form is refused, before
// anything looks at it.
func TestHomeWithoutAVolume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		record string
		code   int
		says   string
	}{
		{"", 0, "no home volume recorded"},
		{"/dev/sda", 1, "does not hold a Hetzner volume's device path"},
		{"/dev/disk/by-id/scsi-0HC_Volume_", 1, "does not hold a Hetzner volume's device path"},
		{"/dev/disk/by-id/scsi-0HC_Volume_0", 1, "does not hold a Hetzner volume's device path"},
		{"/dev/disk/by-id/scsi-0HC_Volume_12345678901234567890", 1, "does not hold a Hetzner volume's device path"},
		{"/dev/disk/by-id/scsi-0HC_Volume_1/../../../sda", 1, "does not hold a Hetzner volume's device path"},
		{"/dev/disk/by-id/scsi-0HC_Volume_4711 /dev/sda", 1, "does not hold a Hetzner volume's device path"},
	}
	for _, tt := range tests {
		t.Run(tt.record, func(t *testing.T) {
			t.Parallel()
			m := newHomeMachine(t, tt.record)
			m.attach(t)
			before := snapshot(t, m.root)
			res := m.runHome(t)
			if res.code != tt.code || !strings.Contains(res.stderr, tt.says) {
				t.Fatalf("exit status %d, want %d saying %q", res.code, tt.code, tt.says)
			}
			compareTrees(t, snapshot(t, m.root), before)
			if got := m.mounts(t); got != "" {
				t.Errorf("mount ran with %q", got)
			}
		})
	}
}
