package localcloud

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// stateVersion is the format of state.json. Bump it and teach loadState the
// old format when the layout changes.
const stateVersion = 1

// state is what survives a restart of the gateway process: the project's
// servers, SSH keys and snapshots and the counters that hand out ids.
// Actions are kept in memory only; after a restart nobody is waiting on the
// old ones. Images and NextImageID, Firewalls and NextFirewallID came
// later without a version bump, and so did Volumes and NextVolumeID: a file
// without them reads as a project without snapshots, firewalls or volumes.
type state struct {
	Version      int             `json:"version"`
	Subnet       int             `json:"subnet"` // second octet of the machines' loopback addresses
	NextServerID int64           `json:"next_server_id"`
	NextKeyID    int64           `json:"next_ssh_key_id"`
	NextActionID int64           `json:"next_action_id"`
	NextImageID  int64           `json:"next_image_id,omitempty"`
	Servers      []*serverRecord `json:"servers"`
	SSHKeys      []*sshKeyRecord `json:"ssh_keys"`
	Images       []*imageRecord  `json:"images,omitempty"`

	NextFirewallID int64             `json:"next_firewall_id,omitempty"`
	Firewalls      []*firewallRecord `json:"firewalls,omitempty"`

	NextVolumeID int64           `json:"next_volume_id,omitempty"`
	Volumes      []*volumeRecord `json:"volumes,omitempty"`
}

// firstImageID keeps snapshot ids clear of the catalog's images.
const firstImageID = 1000

type serverRecord struct {
	ID         int64             `json:"id"`
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	IPv4       string            `json:"ipv4"`
	ServerType string            `json:"server_type"`
	Location   string            `json:"location"`
	ImageID    int64             `json:"image_id"` // a catalog image or a snapshot
	Labels     map[string]string `json:"labels"`
	UserData   string            `json:"user_data"`
	SSHKeys    []int64           `json:"ssh_keys"`
	Created    time.Time         `json:"created"`
}

// imageRecord is a snapshot taken with create_image. Its files (the
// machine's home) live in DataDir/images/<id>/home.
type imageRecord struct {
	ID          int64             `json:"id"`
	Status      string            `json:"status"` // creating, available
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	ImageSize   float64           `json:"image_size"` // GB, known once available
	DiskSize    float64           `json:"disk_size"`  // GB, the source server's disk
	Arch        string            `json:"architecture"`
	FromID      int64             `json:"created_from_id"`
	FromName    string            `json:"created_from_name"`
	Created     time.Time         `json:"created"`
}

type sshKeyRecord struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Fingerprint string            `json:"fingerprint"`
	PublicKey   string            `json:"public_key"`
	Labels      map[string]string `json:"labels"`
	Created     time.Time         `json:"created"`
}

// newState starts an empty project. The machines' subnet 127.N.0.0/16 is
// picked at random so that two local clouds on one host (parallel test
// binaries, two demo gateways) rarely compete for the same addresses.
func newState() (*state, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(250))
	if err != nil {
		return nil, fmt.Errorf("pick machine subnet: %w", err)
	}
	return &state{
		Version:      stateVersion,
		Subnet:       int(n.Int64()) + 2, // 127.2 … 127.251: clear of 127.0.0.1 and 127.1
		NextServerID: 1,
		NextKeyID:    1,
		NextActionID: 1,
		NextImageID:  firstImageID,

		NextFirewallID: 1,
		NextVolumeID:   1,
	}, nil
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return newState()
	}
	if err != nil {
		return nil, fmt.Errorf("read local cloud state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("local cloud state %s is damaged: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("local cloud state %s has version %d, this gateway reads version %d", path, st.Version, stateVersion)
	}
	if st.NextImageID < firstImageID {
		st.NextImageID = firstImageID
	}
	st.NextFirewallID = max(st.NextFirewallID, 1)
	st.NextVolumeID = max(st.NextVolumeID, 1)
	if st.Subnet < 1 || st.Subnet > 254 {
		return nil, fmt.Errorf("local cloud state %s names subnet 127.%d, which is not usable", path, st.Subnet)
	}
	return &st, nil
}

// save writes the state atomically: a crash leaves the old file or the new
// one, never half of either.
func (st *state) save(path string) error {
	slices.SortFunc(st.Servers, func(a, b *serverRecord) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.SSHKeys, func(a, b *sshKeyRecord) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Images, func(a, b *imageRecord) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Firewalls, func(a, b *firewallRecord) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Volumes, func(a, b *volumeRecord) int { return cmp.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode local cloud state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*.json")
	if err != nil {
		return fmt.Errorf("write local cloud state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write local cloud state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write local cloud state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write local cloud state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write local cloud state: %w", err)
	}
	return nil
}

func (st *state) server(id int64) *serverRecord {
	for _, s := range st.Servers {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// removeServer forgets a server, takes it out of the firewalls applied to
// it and detaches its volumes, as Hetzner does when a server is deleted.
func (st *state) removeServer(id int64) {
	st.Servers = slices.DeleteFunc(st.Servers, func(s *serverRecord) bool { return s.ID == id })
	for _, f := range st.Firewalls {
		f.Servers = slices.DeleteFunc(f.Servers, func(s int64) bool { return s == id })
	}
	for _, v := range st.Volumes {
		if v.Server == id {
			v.Server = 0
		}
	}
}

func (st *state) image(id int64) *imageRecord {
	for _, im := range st.Images {
		if im.ID == id {
			return im
		}
	}
	return nil
}

func (st *state) removeImage(id int64) {
	st.Images = slices.DeleteFunc(st.Images, func(im *imageRecord) bool { return im.ID == id })
}

func (st *state) sshKey(id int64) *sshKeyRecord {
	for _, k := range st.SSHKeys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// addressFor derives a server's loopback address from its id, skipping
// the .0 and .255 host parts.
func (st *state) addressFor(id int64) string {
	idx := (id - 1) % (256 * 254)
	return fmt.Sprintf("127.%d.%d.%d", st.Subnet, idx/254, idx%254+1)
}
