package machine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// Paths under RootDir of the home volume.
const (
	// homeDevicePath is where the bootstrap script records the document's
	// home_device, and boot does too.
	homeDevicePath = stateDir + "/home-device"
	// volumeDevices is where attached volumes appear, as udev links them
	// on the NixOS image: the local cloud makes a link there to the
	// volume's folder for each volume attached to the machine's server.
	volumeDevices = "/dev/disk/by-id"
	// volumeDevicePrefix starts the name of each link in volumeDevices.
	volumeDevicePrefix = "scsi-0HC_Volume_"
)

// Names in the machine's folder while a volume is mounted on HomeDir.
const (
	// homeBeneath holds the machine's own home while a volume is
	// mounted, as the image's own home folder lies beneath the mount.
	homeBeneath = "home.beneath"
	// homeNext is a link made to replace HomeDir's.
	homeNext = ".home.next"
)

// homes mounts the home volume on a machine's HOME, as the image's
// cloud-instance-home unit mounts it on the instance user's home: HOME is
// always Dir/home, and "mounting" a volume's folder there makes Dir/home
// a link to the folder, the machine's own home set aside in
// Dir/home.beneath, each step one atomic rename. So a session that
// starts after a mount, on any connection, even one that sshd accepted
// before, has its files in the volume.
//
// It mounts what the record names at the machine's start, when the local
// cloud attaches or detaches a volume (Machine.Remount), and when asked on
// its mount address, as cc-instance-personalise does once it has recorded
// a device, where the image's personalise mode starts the unit. A recorded
// device that is there is mounted, its folder seeded when empty as the
// image formats an empty volume with the home's dotfiles, and the agent
// state file in it removed, as the image does once it mounted the volume;
// a recorded device that is not there leaves the machine's own home, with
// a warning in the log (the image's unit fails); no record, the own home.
type homes struct {
	dir string // the machine's folder
	log *slog.Logger
	ln  net.Listener // the mount address: each connection mounts, then hears "ok" or the error
	wg  sync.WaitGroup

	// mu makes one mount at a time. Lock order: after the local cloud's
	// (it calls Remount holding it), before nothing.
	mu      sync.Mutex
	missing string // the recorded device last warned about as absent
}

// mountTimeout bounds the answer to a mount request.
const mountTimeout = 30 * time.Second

// startHomes mounts what the record of the machine in dir (prepared)
// names, takes mount requests on a free port of the machine's address and
// writes cc-instance-personalise, which makes them.
func startHomes(dir string, cfg Config) (*homes, error) {
	h := &homes{dir: dir, log: logger(cfg).With("machine", cfg.Doc.InstanceID)}
	if err := h.remount(); err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("machine address: %w", err)
	}
	if h.ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
		return nil, fmt.Errorf("listen for mount requests: %w", err)
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		acceptLoop(h.ln, h.log, h.serveMount)
	}()
	personalise, err := personaliseWrapper(dir, cfg.Addr, cfg.Doc.User, h.ln.Addr().String())
	if err == nil {
		err = installProgram(dir, bootstrap.PersonaliseProgram, personalise)
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// serveMount answers one mount request.
func (h *homes) serveMount(c net.Conn) bool {
	defer c.Close()
	c.SetDeadline(time.Now().Add(mountTimeout))
	answer := "ok"
	if err := h.remount(); err != nil {
		h.log.Warn("cannot mount the home volume", "err", err)
		answer = err.Error()
	}
	io.WriteString(c, answer+"\n")
	return true
}

// close stops taking mount requests.
func (h *homes) close() {
	h.ln.Close()
	h.wg.Wait()
}

// remount mounts on HOME what the record names, unless it is mounted.
func (h *homes) remount() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := h.find()
	have, err := mounted(h.dir)
	if err != nil || want == have {
		return err
	}
	if want != "" {
		if err := seedVolume(want); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(want, bootstrap.AgentStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("forget the agent's state: %w", err)
		}
	}
	if err := mount(h.dir, have, want); err != nil {
		return err
	}
	if want == "" {
		h.log.Info("home volume unmounted: HOME is the machine's own folder")
	} else {
		h.log.Info("home volume mounted on HOME", "volume", want)
	}
	return nil
}

// find returns the folder of the recorded home device, or "" for the
// machine's own home.
func (h *homes) find() string {
	record := filepath.Join(h.dir, RootDir, homeDevicePath)
	data, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		h.missing = ""
		return ""
	}
	device := strings.TrimSpace(string(data))
	// The record is written from a checked document; a path outside the
	// volumes' folder is not followed all the same.
	if err == nil && (filepath.Dir(device) != volumeDevices || !strings.HasPrefix(filepath.Base(device), volumeDevicePrefix)) {
		err = fmt.Errorf("%s does not hold a Hetzner volume's device path", record)
	}
	var folder string
	if err == nil {
		folder, err = filepath.EvalSymlinks(filepath.Join(h.dir, RootDir, device))
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(folder); err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is no folder", folder)
		}
	}
	if err != nil {
		if h.missing != device {
			h.missing = device
			h.log.Warn("the recorded home volume is not attached: HOME is the machine's own folder, without the person's files",
				"device", device, "err", err)
		}
		return ""
	}
	h.missing = ""
	return folder
}

// mounted returns the folder mounted on the HOME of the machine in dir, or
// "" when HOME is the machine's own.
func mounted(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, HomeDir))
	var pathErr *os.PathError
	if errors.As(err, &pathErr) && errors.Is(pathErr.Err, unix.EINVAL) {
		return "", nil // a folder: the machine's own
	}
	if err != nil {
		return "", fmt.Errorf("look at HOME: %w", err)
	}
	return target, nil
}

// mount makes the folder want HOME instead of have ("" for the machine's
// own home in both), each step one rename, so that HOME is always there.
func mount(dir, have, want string) error {
	home, beneath, next := filepath.Join(dir, HomeDir), filepath.Join(dir, homeBeneath), filepath.Join(dir, homeNext)
	switch {
	case have == "":
		// The link made beside HOME trades places with the own home.
		if err := os.Symlink(want, beneath); err != nil {
			return fmt.Errorf("mount the home volume: %w", err)
		}
		if err := exchange(beneath, home); err != nil {
			os.Remove(beneath)
			return fmt.Errorf("mount the home volume: %w", err)
		}
	case want == "":
		if err := exchange(beneath, home); err != nil {
			return fmt.Errorf("unmount the home volume: %w", err)
		}
		if err := os.Remove(beneath); err != nil {
			return fmt.Errorf("unmount the home volume: %w", err)
		}
	default:
		os.Remove(next)
		if err := os.Symlink(want, next); err != nil {
			return fmt.Errorf("mount the home volume: %w", err)
		}
		if err := os.Rename(next, home); err != nil {
			os.Remove(next)
			return fmt.Errorf("mount the home volume: %w", err)
		}
	}
	return nil
}

// exchange swaps two paths at once (renameat2 with RENAME_EXCHANGE).
func exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("exchange %s and %s: %w", a, b, err)
	}
	return nil
}

// unmountAtStart gives a starting machine its own home as HOME, as a boot
// starts with nothing mounted: a machine that was not closed (the gateway
// was killed) may have a volume mounted, or a link a mount left half made.
func unmountAtStart(dir string) error {
	have, err := mounted(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if have != "" {
		if err := mount(dir, have, ""); err != nil {
			return err
		}
	}
	for _, name := range []string{homeBeneath, homeNext} {
		path := filepath.Join(dir, name)
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove a half-made mount: %w", err)
			}
		}
	}
	return nil
}

// OwnHome is the machine's own home in the machine folder dir, whatever is
// mounted on its HOME: what a snapshot of its disk holds.
func OwnHome(dir string) string {
	if fi, err := os.Lstat(filepath.Join(dir, HomeDir)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return filepath.Join(dir, homeBeneath)
	}
	return filepath.Join(dir, HomeDir)
}

// seedVolume gives an empty volume's folder the login files the machine
// writes to its own home, private.
func seedVolume(folder string) error {
	f, err := os.Open(folder)
	if err != nil {
		return fmt.Errorf("open the home volume: %w", err)
	}
	_, err = f.Readdirnames(1)
	f.Close()
	if !errors.Is(err, io.EOF) {
		return nil // not empty, or unreadable: a session there says why
	}
	if err := os.Chmod(folder, 0o700); err != nil {
		return fmt.Errorf("make the home volume private: %w", err)
	}
	return installLoginFiles(folder)
}

// recordHomeDevice records the home device of the document a machine
// boots with, or forgets an earlier document's, as the bootstrap script
// does.
func recordHomeDevice(root string, doc bootstrap.Document) error {
	path := filepath.Join(root, homeDevicePath)
	if doc.HomeDevice == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("forget the home device: %w", err)
		}
		return nil
	}
	return writeFile(path, []byte(doc.HomeDevice+"\n"))
}
