package localcloud

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
)

// Volumes as the API keeps them: block storage bound to a location,
// attached to at most one server of that location at a time, that grows
// but never shrinks. The local cloud's volume is a folder,
// DataDir/volumes/<id>, made when the volume is first attached and removed
// with the volume. An attached volume appears on its server's machine as
// Hetzner's udev makes a block device appear: a link at the volume's
// linux_device (/dev/disk/by-id/scsi-0HC_Volume_<id>) under the machine's
// root (machine.RootDir) to the folder, made when the attach action ends
// and removed when the detach action ends, on a running machine too (a
// hot plug, after which the machine is told to remount), and made again
// before each boot from the state. The machine decides what to do with
// it: a document whose home_device names it has it mounted on HOME, as the
// NixOS image mounts it (see package machine). A snapshot copies the machine's own home
// (machine.OwnHome), never a volume mounted on it. Deleting a server detaches its volumes, as on Hetzner,
// and its folder goes with the links. A volume's size is only a number
// here: nothing limits what its folder holds.
//
// Where the API description names no error code, the fake answers as
// hcloud-go expects: volume_already_attached (422) for a delete or attach
// of an attached volume, invalid_input naming the field for a server in
// another location, a volume not attached, or a size that does not grow.

// volumeRecord is a volume of the project.
type volumeRecord struct {
	ID       int64             `json:"id"`
	Name     string            `json:"name"`
	Size     int               `json:"size"` // GB
	Location string            `json:"location"`
	Format   string            `json:"format,omitempty"` // "" when not formatted on creation
	Labels   map[string]string `json:"labels"`
	Server   int64             `json:"server,omitempty"` // attached to; 0 for none
	Created  time.Time         `json:"created"`
}

type volumeJSON struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	Server      *int64            `json:"server"`
	Size        int               `json:"size"`
	Location    locationJSON      `json:"location"`
	Format      *string           `json:"format"`
	Labels      map[string]string `json:"labels"`
	LinuxDevice string            `json:"linux_device"`
	Protection  protectionJSON    `json:"protection"`
	Created     time.Time         `json:"created"`
}

// Hetzner's limits on volumes.
const (
	minVolumeSize = 10
	maxVolumeSize = 10240
)

// volumeNamePattern: alphanumerics, dashes, underscores and dots, starting
// and ending alphanumeric, at most 64 characters.
var volumeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62}[a-zA-Z0-9])?$`)

// The commands of volume actions.
const (
	cmdCreateVolume = "create_volume"
	cmdAttachVolume = "attach_volume"
	cmdDetachVolume = "detach_volume"
	cmdResizeVolume = "resize_volume"
)

// volumeView renders a volume as the API shows it. Callers hold c.mu.
func (c *Cloud) volumeView(v *volumeRecord) volumeJSON {
	l, _ := findLocation(v.Location)
	view := volumeJSON{
		ID: v.ID, Name: v.Name, Status: "available", Size: v.Size, Location: l.loc,
		Labels: labelsView(v.Labels), Created: v.Created,
		LinuxDevice: linuxDevice(v.ID),
	}
	if c.volumeCreating(v.ID) {
		view.Status = "creating"
	}
	if v.Server != 0 {
		s := v.Server
		view.Server = &s
	}
	if v.Format != "" {
		f := v.Format
		view.Format = &f
	}
	return view
}

// volumeCreating reports whether the volume's create action still runs.
// Callers hold c.mu.
func (c *Cloud) volumeCreating(id int64) bool {
	return c.volumeBusyWith(id, cmdCreateVolume)
}

// volumeBusyWith reports whether an action with one of the commands (any,
// when none are given) runs on the volume. Callers hold c.mu.
func (c *Cloud) volumeBusyWith(id int64, commands ...string) bool {
	for _, a := range c.actions {
		if a.status == "running" && slices.Contains(a.resources, actionResource{ID: id, Type: "volume"}) &&
			(len(commands) == 0 || slices.Contains(commands, a.command)) {
			return true
		}
	}
	return false
}

// GET /volumes with name, label_selector and status filters.
func (c *Cloud) listVolumes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, ok := labelFilter(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	var list []volumeJSON
	for _, v := range c.st.Volumes {
		view := c.volumeView(v)
		switch {
		case q.Has("name") && q.Get("name") != v.Name:
		case len(q["status"]) > 0 && !slices.Contains(q["status"], view.Status):
		case !sel.matches(v.Labels):
		default:
			list = append(list, view)
		}
	}
	c.mu.Unlock()
	writeList(w, r, "volumes", list, map[string]func(a, b volumeJSON) int{
		"id":      func(a, b volumeJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name":    func(a, b volumeJSON) int { return cmp.Compare(a.Name, b.Name) },
		"created": func(a, b volumeJSON) int { return a.Created.Compare(b.Created) },
	})
}

func (c *Cloud) getVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	v := c.st.volume(id)
	var view volumeJSON
	if v != nil {
		view = c.volumeView(v)
	}
	c.mu.Unlock()
	if v == nil {
		writeNotFound(w, "volume", id)
		return
	}
	writeVolume(w, view)
}

func writeVolume(w http.ResponseWriter, view volumeJSON) {
	writeJSON(w, http.StatusOK, struct {
		Volume volumeJSON `json:"volume"`
	}{view})
}

type createVolumeRequest struct {
	Name      string            `json:"name"`
	Size      *int              `json:"size"`
	Location  string            `json:"location"`
	Server    *int64            `json:"server"`
	Labels    map[string]string `json:"labels"`
	Format    *string           `json:"format"`
	Automount *bool             `json:"automount"`
}

// POST /volumes: in a location, or beside a server it is then attached to
// by a second action.
func (c *Cloud) createVolume(w http.ResponseWriter, r *http.Request) {
	var req createVolumeRequest
	if !decodeBody(w, r, &req) || !checkVolumeRequest(w, req) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		writeStateError(w, errClosed)
		return
	}
	if !c.volumeNameFree(w, req.Name, 0) {
		return
	}
	v := &volumeRecord{Name: req.Name, Size: *req.Size, Labels: req.Labels, Created: c.now().UTC().Truncate(time.Second)}
	if req.Format != nil {
		v.Format = *req.Format
	}
	var server *serverRecord
	if req.Server != nil {
		if server = c.serverToAttach(w, *req.Server); server == nil {
			return
		}
		v.Location = server.Location
	} else {
		l, found := findLocation(req.Location)
		if !found {
			writeInvalid(w, "location", fmt.Sprintf("location %q not found", req.Location))
			return
		}
		v.Location = l.loc.Name
	}
	v.ID = c.st.NextVolumeID
	c.st.NextVolumeID++
	c.st.Volumes = append(c.st.Volumes, v)

	d := c.opts.ActionDuration
	create := c.volumeAction(cmdCreateVolume, v, 0, d, func() error { return nil })
	// A volume whose creation failed is not kept.
	create.onFault = func() { c.st.removeVolume(v.ID) }
	next := []actionJSON{}
	if server != nil {
		next = append(next, c.actionJSON(c.attachAction(v, server, 2*d)))
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	c.log.Info("volume created", "volume", v.Name, "id", v.ID, "size_gb", v.Size, "location", v.Location)
	writeJSON(w, http.StatusCreated, struct {
		Volume      volumeJSON   `json:"volume"`
		Action      actionJSON   `json:"action"`
		NextActions []actionJSON `json:"next_actions"`
	}{c.volumeView(v), c.actionJSON(create), next})
}

// checkVolumeRequest checks what a create request says by itself; on the
// first problem it answers as Hetzner does and returns false.
func checkVolumeRequest(w http.ResponseWriter, req createVolumeRequest) bool {
	switch {
	case !volumeNamePattern.MatchString(req.Name):
		writeInvalid(w, "name", "name must be 1 to 64 letters, digits, dashes, underscores and dots, starting and ending with a letter or digit")
	case req.Size == nil || *req.Size < minVolumeSize || *req.Size > maxVolumeSize:
		writeInvalid(w, "size", fmt.Sprintf("size must be %d to %d GB", minVolumeSize, maxVolumeSize))
	case (req.Server == nil) == (req.Location == ""):
		writeInvalid(w, "location", "give either location or server")
	case req.Automount != nil && *req.Automount && req.Server == nil:
		writeInvalid(w, "automount", "automount needs a server")
	case req.Format != nil && *req.Format != "ext4" && *req.Format != "xfs":
		writeInvalid(w, "format", "format must be ext4 or xfs")
	default:
		if err := validateLabels(req.Labels); err != nil {
			writeInvalid(w, "labels", err.Error())
			return false
		}
		return true
	}
	return false
}

// PUT /volumes/{id}: name and labels.
func (c *Cloud) updateVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	req, ok := decodeUpdate(w, r)
	if !ok {
		return
	}
	if req.Name != nil && !volumeNamePattern.MatchString(*req.Name) {
		writeInvalid(w, "name", "name must be 1 to 64 letters, digits, dashes, underscores and dots")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.volumeToChange(w, id)
	if v == nil {
		return
	}
	if req.Name != nil {
		if !c.volumeNameFree(w, *req.Name, id) {
			return
		}
		v.Name = *req.Name
	}
	if req.Labels != nil {
		v.Labels = *req.Labels
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeVolume(w, c.volumeView(v))
}

// DELETE /volumes/{id}: refused while attached. The folder goes with it,
// removed after the lock is released (a home may be large); a crash in
// between leaves a folder that restoreVolumes removes.
func (c *Cloud) deleteVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	v := c.unlockedVolume(w, id)
	if v == nil {
		c.mu.Unlock()
		return
	}
	if v.Server != 0 {
		c.mu.Unlock()
		writeAttached(w, v)
		return
	}
	c.st.removeVolume(id)
	err := c.persist()
	c.mu.Unlock()
	if err != nil {
		writeStateError(w, err)
		return
	}
	if err := os.RemoveAll(c.volumeDir(id)); err != nil {
		c.log.Error("remove volume folder", "volume", v.Name, "id", id, "err", err)
	}
	c.log.Info("volume deleted", "volume", v.Name, "id", id)
	w.WriteHeader(http.StatusNoContent)
}

// POST /volumes/{id}/actions/attach: to a server in the volume's location,
// the volume detached.
func (c *Cloud) attachVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		Server    *int64 `json:"server"`
		Automount *bool  `json:"automount"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Server == nil {
		writeInvalid(w, "server", "server is required")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.unlockedVolume(w, id)
	if v == nil {
		return
	}
	if v.Server != 0 {
		writeAttached(w, v)
		return
	}
	s := c.serverToAttach(w, *req.Server)
	if s == nil {
		return
	}
	if s.Location != v.Location {
		writeInvalid(w, "server", fmt.Sprintf("server %d is in %s, volume %d in %s: a volume attaches only to servers in its own location", s.ID, s.Location, id, v.Location))
		return
	}
	c.respondVolumeAction(w, c.attachAction(v, s, c.opts.ActionDuration))
}

// POST /volumes/{id}/actions/detach
func (c *Cloud) detachVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.unlockedVolume(w, id)
	if v == nil {
		return
	}
	if v.Server == 0 {
		writeInvalid(w, "id", fmt.Sprintf("volume %d is not attached", id))
		return
	}
	a := c.volumeAction(cmdDetachVolume, v, v.Server, c.opts.ActionDuration, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		v := c.st.volume(id)
		if v == nil || c.closed {
			return nil
		}
		s := c.st.server(v.Server)
		v.Server = 0
		if err := c.persist(); err != nil {
			return err
		}
		if s == nil {
			return nil
		}
		return c.plugVolumes(s)
	})
	c.respondVolumeAction(w, a)
}

// POST /volumes/{id}/actions/resize: only to a larger size.
func (c *Cloud) resizeVolume(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		Size *float64 `json:"size"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Size == nil || *req.Size != math.Trunc(*req.Size) || *req.Size > maxVolumeSize {
		writeInvalid(w, "size", fmt.Sprintf("size must be a whole number of GB up to %d", maxVolumeSize))
		return
	}
	size := int(*req.Size)
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.unlockedVolume(w, id)
	if v == nil {
		return
	}
	if size <= v.Size {
		writeInvalid(w, "size", fmt.Sprintf("volume %d has %d GB; a volume only grows", id, v.Size))
		return
	}
	a := c.volumeAction(cmdResizeVolume, v, 0, c.opts.ActionDuration, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if v := c.st.volume(id); v != nil && !c.closed {
			v.Size = size
			return c.persist()
		}
		return nil
	})
	c.respondVolumeAction(w, a)
}

// attachAction attaches v to s when it ends. It locks the server, as on
// Hetzner. Callers hold c.mu.
func (c *Cloud) attachAction(v *volumeRecord, s *serverRecord, after time.Duration) *action {
	id, serverID := v.ID, s.ID
	return c.volumeAction(cmdAttachVolume, v, serverID, after, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		v := c.st.volume(id)
		switch {
		case c.closed:
			return errClosed
		case v == nil:
			return fmt.Errorf("volume %d was deleted", id)
		case c.st.server(serverID) == nil:
			return fmt.Errorf("server %d was deleted", serverID)
		}
		v.Server = serverID
		if err := c.persist(); err != nil {
			return err
		}
		return c.plugVolumes(c.st.server(serverID))
	})
}

// volumeAction starts an action on v and, when serverID is not 0, on that
// server, which it locks. Callers hold c.mu.
func (c *Cloud) volumeAction(command string, v *volumeRecord, serverID int64, after time.Duration, effect func() error) *action {
	a := c.startAction(command, serverID, after, "", effect)
	a.resources = append([]actionResource{{ID: v.ID, Type: "volume"}}, a.resources...)
	return a
}

// respondVolumeAction saves the state and answers with the action.
// Callers hold c.mu.
func (c *Cloud) respondVolumeAction(w http.ResponseWriter, a *action) {
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Action actionJSON `json:"action"`
	}{c.actionJSON(a)})
}

// GET /volumes/{id}/actions
func (c *Cloud) listVolumeActions(w http.ResponseWriter, r *http.Request) {
	c.listResourceActions(w, r, "volume", func(id int64) bool { return c.st.volume(id) != nil })
}

// GET /volumes/{id}/actions/{action_id}
func (c *Cloud) getVolumeAction(w http.ResponseWriter, r *http.Request) {
	c.getResourceAction(w, r, "volume")
}

// volumeToChange finds the volume a request is to change; if there is
// none, or the cloud is closing, it answers so and returns nil. Callers
// hold c.mu.
func (c *Cloud) volumeToChange(w http.ResponseWriter, id int64) *volumeRecord {
	return toChange(c, w, "volume", id, c.st.volume(id))
}

// unlockedVolume is volumeToChange for requests that act on the volume: one
// that an action works on is locked. Callers hold c.mu.
func (c *Cloud) unlockedVolume(w http.ResponseWriter, id int64) *volumeRecord {
	v := c.volumeToChange(w, id)
	if v != nil && c.volumeBusyWith(id) {
		writeVolumeLocked(w, id)
		return nil
	}
	return v
}

func writeAttached(w http.ResponseWriter, v *volumeRecord) {
	writeError(w, http.StatusUnprocessableEntity, "volume_already_attached",
		fmt.Sprintf("volume %d is attached to server %d; detach it first", v.ID, v.Server), nil)
}

func writeVolumeLocked(w http.ResponseWriter, id int64) {
	writeError(w, http.StatusLocked, "locked", fmt.Sprintf("volume %d is locked by a running action", id), nil)
}

// serverToAttach finds the server a volume is to be attached to; a
// missing one is invalid input, a busy one locked. Callers hold c.mu.
func (c *Cloud) serverToAttach(w http.ResponseWriter, id int64) *serverRecord {
	s := c.st.server(id)
	switch {
	case s == nil:
		writeInvalid(w, "server", fmt.Sprintf("server %d not found", id))
	case c.serverBusy(id) || s.Status == "deleting":
		writeLocked(w)
	default:
		return s
	}
	return nil
}

// volumeNameFree answers 409 if another volume than except has name.
// Callers hold c.mu.
func (c *Cloud) volumeNameFree(w http.ResponseWriter, name string, except int64) bool {
	for _, v := range c.st.Volumes {
		if v.Name == name && v.ID != except {
			writeNameTaken(w, "volume")
			return false
		}
	}
	return true
}

// serverVolumeRefs resolves the volumes a server create request names:
// each must exist in the server's location, detached and not busy. On a
// problem it answers and returns false. Callers hold c.mu.
func (c *Cloud) serverVolumeRefs(w http.ResponseWriter, ids []int64, location string) ([]*volumeRecord, bool) {
	var list []*volumeRecord
	for _, id := range ids {
		v := c.st.volume(id)
		switch {
		case v == nil:
			writeInvalid(w, "volumes", fmt.Sprintf("volume %d not found", id))
		case v.Location != location:
			writeInvalid(w, "volumes", fmt.Sprintf("volume %d is in %s, not %s", id, v.Location, location))
		case v.Server != 0:
			writeAttached(w, v)
		case c.volumeBusyWith(id):
			writeVolumeLocked(w, id)
		default:
			list = append(list, v)
			continue
		}
		return nil, false
	}
	return list, true
}

// serverVolumes lists the ids of the volumes attached to a server, in id
// order. Callers hold c.mu.
func (c *Cloud) serverVolumes(serverID int64) []int64 {
	ids := []int64{}
	for _, v := range c.st.Volumes {
		if v.Server == serverID {
			ids = append(ids, v.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// linuxDevice is the stable path of volume id on the server it is attached
// to, as Hetzner names it.
func linuxDevice(id int64) string {
	return fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", id)
}

// linkVolumes makes the by-id folder under the root of s's machine hold a
// link to the folder of each volume attached to s, at the volume's
// linuxDevice, and no other: so the machine finds its volumes as the
// NixOS image finds the block devices udev links there, at once after an
// attach or a detach. A volume's folder is made when it is first linked.
// Callers hold c.mu.
func (c *Cloud) linkVolumes(s *serverRecord) error {
	root := filepath.Join(c.machineDir(s.Name), machine.RootDir)
	byID := filepath.Join(root, filepath.Dir(linuxDevice(1)))
	if err := os.MkdirAll(byID, 0o700); err != nil {
		return fmt.Errorf("link volumes of %s: %w", s.Name, err)
	}
	want := map[string]string{}
	for _, id := range c.serverVolumes(s.ID) {
		want[filepath.Base(linuxDevice(id))] = c.volumeDir(id)
	}
	entries, err := os.ReadDir(byID)
	if err != nil {
		return fmt.Errorf("link volumes of %s: %w", s.Name, err)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			if err := os.Remove(filepath.Join(byID, e.Name())); err != nil {
				return fmt.Errorf("unlink a detached volume of %s: %w", s.Name, err)
			}
		}
	}
	for name, folder := range want {
		link := filepath.Join(byID, name)
		if target, err := os.Readlink(link); err == nil && target == folder {
			continue
		}
		if err := os.MkdirAll(folder, 0o700); err != nil {
			return fmt.Errorf("create volume folder: %w", err)
		}
		// A new link renamed over the old one: the machine never sees none.
		tmp := filepath.Join(byID, "."+name)
		_ = os.Remove(tmp)
		if err := os.Symlink(folder, tmp); err != nil {
			return fmt.Errorf("link volume of %s: %w", s.Name, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			return fmt.Errorf("link volume of %s: %w", s.Name, err)
		}
	}
	return nil
}

// plugVolumes links s's volumes (linkVolumes) and, when its machine runs,
// has it mount what its record names. Callers hold c.mu, which comes
// before the machine's own mount lock.
func (c *Cloud) plugVolumes(s *serverRecord) error {
	if err := c.linkVolumes(s); err != nil {
		return err
	}
	if m := c.machines[s.ID]; m != nil {
		if err := m.Remount(); err != nil {
			return fmt.Errorf("remount the home of %s: %w", s.Name, err)
		}
	}
	return nil
}

func (c *Cloud) volumeDir(id int64) string {
	return filepath.Join(c.opts.DataDir, "volumes", strconv.FormatInt(id, 10))
}

// restoreVolumes removes the folders of volumes that are gone: a crash
// between a delete and its folder's removal leaves one.
func (c *Cloud) restoreVolumes() {
	entries, err := os.ReadDir(filepath.Join(c.opts.DataDir, "volumes"))
	if err != nil {
		c.log.Error("read volume folders", "err", err)
		return
	}
	for _, e := range entries {
		id, err := strconv.ParseInt(e.Name(), 10, 64)
		if err == nil && c.st.volume(id) != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.opts.DataDir, "volumes", e.Name())); err != nil {
			c.log.Error("remove folder of deleted volume", "folder", e.Name(), "err", err)
		}
	}
}

func (st *state) volume(id int64) *volumeRecord {
	for _, v := range st.Volumes {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (st *state) removeVolume(id int64) {
	st.Volumes = slices.DeleteFunc(st.Volumes, func(v *volumeRecord) bool { return v.ID == id })
}
