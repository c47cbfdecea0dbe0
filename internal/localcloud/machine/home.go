package machine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

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

// homes finds the HOME of each new session, as the image's
// cloud-instance-home unit decides what its home is: the recorded home
// device's folder when it is there, the machine's own Dir/home when no
// device is recorded or the recorded one is absent (warned about once).
// Unlike the unit, which mounts at boot and when a personalisation starts
// it, a local machine looks at each new session: a folder needs no mount.
type homes struct {
	dir string // the machine's folder
	own string // Dir/home
	log *slog.Logger
	// use makes home the one the machine's files name (its user
	// database, sshd's config), before a session starts there.
	use func(home string) error

	// mu makes one session at a time switch HOME. Lock order: after
	// nothing, before nothing.
	mu      sync.Mutex
	current string // HOME of the last session; "" before the first
	missing string // the recorded device last warned about as absent
}

// resolve returns the HOME of a session starting now. A machine starting
// to use a volume's folder seeds it if empty, as the image formats an empty
// volume with its home's dotfiles, and forgets the agent state there, as
// the image does once it mounted the volume: what the last machine's agent
// said means nothing here.
func (h *homes) resolve() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	home := h.find()
	if home == h.current {
		return home, nil
	}
	if home != h.own {
		if err := seedVolume(home); err != nil {
			return "", err
		}
	}
	if err := os.Remove(filepath.Join(home, bootstrap.AgentStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("forget the agent's state: %w", err)
	}
	if err := h.use(home); err != nil {
		return "", err
	}
	if h.current != "" || home != h.own {
		h.log.Info("sessions get a new HOME", "home", home)
	}
	h.current = home
	return home, nil
}

// find returns the folder of the recorded home device, or the machine's
// own home.
func (h *homes) find() string {
	record := filepath.Join(h.dir, RootDir, homeDevicePath)
	data, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		h.missing = ""
		return h.own
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
				"device", device, "home", h.own, "err", err)
		}
		return h.own
	}
	h.missing = ""
	return folder
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
