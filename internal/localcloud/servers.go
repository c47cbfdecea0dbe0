package localcloud

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
)

// serverNamePattern is an RFC 1123 hostname, as Hetzner demands; it also
// keeps names safe as folder names under DataDir/machines.
var serverNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// serverView renders a server as the API shows it. Callers hold c.mu.
func (c *Cloud) serverView(s *serverRecord) serverJSON {
	t, _ := findServerType(s.ServerType)
	l, _ := findLocation(s.Location)
	traffic := int64(20 << 40)
	zero := int64(0)
	return serverJSON{
		ID:      s.ID,
		Name:    s.Name,
		Status:  s.Status,
		Created: s.Created,
		PublicNet: publicNetJSON{
			IPv4:        &ipv4JSON{ID: s.ID, IP: s.IPv4, DNSPtr: "static." + s.IPv4 + ".clients.local"},
			FloatingIPs: []int64{},
			Firewalls:   c.serverFirewalls(s.ID),
		},
		PrivateNet:      []any{},
		ServerType:      c.serverTypeView(t),
		Location:        l.loc,
		Image:           c.imageView(s.ImageID),
		Locked:          c.serverBusy(s.ID),
		OutgoingTraffic: &zero,
		IngoingTraffic:  &zero,
		IncludedTraffic: &traffic,
		Labels:          labelsView(s.Labels),
		Volumes:         c.serverVolumes(s.ID),
		LoadBalancers:   []int64{},
		PrimaryDiskSize: int(t.disk),
	}
}

// GET /servers with name, label_selector and status filters.
func (c *Cloud) listServers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, ok := labelFilter(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	var list []serverJSON
	for _, s := range c.st.Servers {
		switch {
		case q.Has("name") && q.Get("name") != s.Name:
		case len(q["status"]) > 0 && !slices.Contains(q["status"], s.Status):
		case !sel.matches(s.Labels):
		default:
			list = append(list, c.serverView(s))
		}
	}
	c.mu.Unlock()
	writeList(w, r, "servers", list, map[string]func(a, b serverJSON) int{
		"id":      func(a, b serverJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name":    func(a, b serverJSON) int { return cmp.Compare(a.Name, b.Name) },
		"created": func(a, b serverJSON) int { return a.Created.Compare(b.Created) },
	})
}

func (c *Cloud) getServer(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	s := c.st.server(id)
	var view serverJSON
	if s != nil {
		view = c.serverView(s)
	}
	c.mu.Unlock()
	if s == nil {
		writeNotFound(w, "server", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Server serverJSON `json:"server"`
	}{view})
}

type createServerRequest struct {
	Name             string            `json:"name"`
	ServerType       json.RawMessage   `json:"server_type"`
	Image            json.RawMessage   `json:"image"`
	Location         string            `json:"location"`
	Datacenter       string            `json:"datacenter"`
	SSHKeys          []json.RawMessage `json:"ssh_keys"`
	UserData         string            `json:"user_data"`
	StartAfterCreate *bool             `json:"start_after_create"`
	Labels           map[string]string `json:"labels"`
	Firewalls        []firewallRef     `json:"firewalls"`
	Volumes          []int64           `json:"volumes"`
}

// POST /servers. The server starts "initializing" with two actions:
// create_server, then start_server (unless start_after_create is false),
// which boots the machine.
func (c *Cloud) createServer(w http.ResponseWriter, r *http.Request) {
	var req createServerRequest
	if !decodeBody(w, r, &req) {
		return
	}
	plan, ok := c.planServer(w, req)
	if !ok || c.refuseSoldOut(w, plan) {
		return
	}
	// A server made from a snapshot starts with the snapshot's home. The
	// copy is made outside the lock and moved into place under it.
	var staged string
	if plan.snapshot != nil {
		var err error
		if staged, err = c.stageRestore(plan.snapshot.ID); err != nil {
			c.log.Warn("restore snapshot", "image", plan.snapshot.ID, "err", err)
			writeInvalid(w, "image", fmt.Sprintf("image %d cannot be read (deleted meanwhile?)", plan.snapshot.ID))
			return
		}
		defer func() { _ = os.RemoveAll(staged) }() // gone once moved into place
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		writeStateError(w, errClosed)
		return
	}
	keyIDs, ok := c.sshKeyIDs(w, req.SSHKeys)
	if !ok {
		return
	}
	firewalls, ok := c.serverFirewallRefs(w, req.Firewalls)
	if !ok {
		return
	}
	volumes, ok := c.serverVolumeRefs(w, req.Volumes, plan.location.loc.Name)
	if !ok {
		return
	}
	if slices.ContainsFunc(c.st.Servers, func(s *serverRecord) bool { return s.Name == req.Name }) {
		writeNameTaken(w, "server")
		return
	}
	s := &serverRecord{
		ID:         c.st.NextServerID,
		Name:       req.Name,
		Status:     "initializing",
		ServerType: plan.serverType.name,
		Location:   plan.location.loc.Name,
		ImageID:    plan.image.ID,
		Labels:     req.Labels,
		UserData:   req.UserData,
		SSHKeys:    keyIDs,
		Created:    c.now().UTC().Truncate(time.Second),
	}
	if staged != "" && !c.moveRestoredHome(w, s.Name, staged) {
		return
	}
	c.st.NextServerID++
	s.IPv4 = c.st.addressFor(s.ID)
	c.st.Servers = append(c.st.Servers, s)
	for _, f := range firewalls {
		f.Servers = append(f.Servers, s.ID)
	}
	for _, v := range volumes { // attached from the start: the machine boots with them
		v.Server = s.ID
	}

	d := c.opts.ActionDuration
	afterCreate := "off"
	if plan.start {
		afterCreate = "starting"
	}
	create := c.startAction("create_server", s.ID, d, "off", func() error { return c.setStatus(s.ID, "initializing", afterCreate) })
	next := []actionJSON{}
	if plan.start {
		requested := time.Now()
		boot := c.startAction("start_server", s.ID, 2*d, "off", func() error { return c.boot(s.ID, requested) })
		next = append(next, c.actionJSON(boot))
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	c.log.Info("server created", "server", s.Name, "id", s.ID, "ip", s.IPv4)

	// Hetzner mails a root password only when no SSH key was given.
	var rootPassword *string
	if len(keyIDs) == 0 {
		if pw, err := randomHex(10); err == nil {
			rootPassword = &pw
		}
	}
	writeJSON(w, http.StatusCreated, struct {
		Server       serverJSON   `json:"server"`
		Action       actionJSON   `json:"action"`
		NextActions  []actionJSON `json:"next_actions"`
		RootPassword *string      `json:"root_password"`
	}{c.serverView(s), c.actionJSON(create), next, rootPassword})
}

// serverPlan is a create request checked against the catalogue.
type serverPlan struct {
	serverType catalogServerType
	image      imageJSON
	snapshot   *imageRecord // the snapshot the server starts from; nil for a catalogue image
	location   catalogLocation
	start      bool
}

// planServer checks a create request's fields that need no lock held for
// long; on the first problem it answers as Hetzner does and returns false.
func (c *Cloud) planServer(w http.ResponseWriter, req createServerRequest) (serverPlan, bool) {
	var p serverPlan
	if !serverNamePattern.MatchString(req.Name) || len(req.Name) > 63 {
		writeInvalid(w, "name", "name must be a valid hostname (RFC 1123) of at most 63 characters")
		return p, false
	}
	typeRef, err := idOrName(req.ServerType)
	if err != nil {
		writeInvalid(w, "server_type", "server_type is required: "+err.Error())
		return p, false
	}
	var ok bool
	if p.serverType, ok = findServerType(typeRef); !ok {
		writeInvalid(w, "server_type", fmt.Sprintf("server type %q not found", typeRef))
		return p, false
	}
	if p.image, p.snapshot, ok = c.planImage(w, req.Image); !ok {
		return p, false
	}
	if p.image.DiskSize > p.serverType.disk {
		writeInvalid(w, "image", "image disk is bigger than server type disk")
		return p, false
	}
	locRef := requestedLocation(req)
	if p.location, ok = findLocation(locRef); !ok {
		writeInvalid(w, "location", fmt.Sprintf("location %q not found", locRef))
		return p, false
	}
	if err := validateLabels(req.Labels); err != nil {
		writeInvalid(w, "labels", err.Error())
		return p, false
	}
	// The machine is personalised by the bootstrap document alone; a server
	// without one could never be reached.
	if req.UserData == "" {
		writeInvalid(w, "user_data", "the local cloud boots machines from a bootstrap document in user_data; none was given")
		return p, false
	}
	if _, err := bootstrap.ParseUserData([]byte(req.UserData)); err != nil {
		writeInvalid(w, "user_data", err.Error())
		return p, false
	}
	p.start = req.StartAfterCreate == nil || *req.StartAfterCreate
	return p, true
}

// planImage finds the image a create request names, which must be
// available; on a problem it answers and returns false.
func (c *Cloud) planImage(w http.ResponseWriter, raw json.RawMessage) (imageJSON, *imageRecord, bool) {
	ref, err := idOrName(raw)
	if err != nil {
		writeInvalid(w, "image", "image is required: "+err.Error())
		return imageJSON{}, nil, false
	}
	c.mu.Lock()
	im, snapshot, ok := c.lookupImage(ref)
	c.mu.Unlock()
	switch {
	case !ok:
		writeInvalid(w, "image", fmt.Sprintf("image %q not found", ref))
	case im.Status != "available":
		writeInvalid(w, "image", fmt.Sprintf("image %d is not available yet (%s)", im.ID, im.Status))
	default:
		return im, snapshot, true
	}
	return imageJSON{}, nil, false
}

// requestedLocation is the location a create request names, by itself or
// by its datacenter, or the first location.
func requestedLocation(req createServerRequest) string {
	loc := req.Location
	if loc == "" {
		loc, _, _ = strings.Cut(req.Datacenter, "-")
	}
	if loc == "" {
		loc = locations[0].loc.Name
	}
	return loc
}

// sshKeyIDs resolves a create request's SSH keys; on a problem it answers
// and returns false. Callers hold c.mu.
func (c *Cloud) sshKeyIDs(w http.ResponseWriter, refs []json.RawMessage) ([]int64, bool) {
	var ids []int64
	for _, raw := range refs {
		ref, err := idOrName(raw)
		if err != nil {
			writeInvalid(w, "ssh_keys", "ssh key "+err.Error())
			return nil, false
		}
		k := c.findSSHKey(ref)
		if k == nil {
			writeInvalid(w, "ssh_keys", fmt.Sprintf("ssh key %q not found", ref))
			return nil, false
		}
		ids = append(ids, k.ID)
	}
	return ids, true
}

// moveRestoredHome moves a staged snapshot home into place as the folder
// of the server name; on failure it answers and returns false. Callers
// hold c.mu.
func (c *Cloud) moveRestoredHome(w http.ResponseWriter, name, staged string) bool {
	dir := c.machineDir(name)
	err := os.RemoveAll(dir) // a leftover of an earlier server of that name
	if err == nil {
		err = os.Rename(staged, dir)
	}
	if err != nil {
		c.log.Error("move restored home into place", "server", name, "err", err)
		writeError(w, http.StatusInternalServerError, "server_error", "the local cloud could not restore the snapshot", nil)
		return false
	}
	return true
}

// findSSHKey looks a key up by id or name. Callers hold c.mu.
func (c *Cloud) findSSHKey(ref string) *sshKeyRecord {
	for _, k := range c.st.SSHKeys {
		if strconv.FormatInt(k.ID, 10) == ref || k.Name == ref {
			return k
		}
	}
	return nil
}

// serverToChange finds the server a request is to change. If there is
// none, or the cloud is closing, it answers so and returns nil. Callers
// hold c.mu.
func (c *Cloud) serverToChange(w http.ResponseWriter, id int64) *serverRecord {
	return toChange(c, w, "server", id, c.st.server(id))
}

// unlockedServer is serverToChange for requests that start an action: a
// server that is busy with another action, or being deleted, is locked.
// Callers hold c.mu.
func (c *Cloud) unlockedServer(w http.ResponseWriter, id int64) *serverRecord {
	s := c.serverToChange(w, id)
	if s == nil {
		return nil
	}
	if c.serverBusy(id) || s.Status == "deleting" {
		writeLocked(w)
		return nil
	}
	return s
}

// DELETE /servers/{id}. Allowed even while other actions run, as on
// Hetzner: a machine must always be stoppable for good.
func (c *Cloud) deleteServer(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.serverToChange(w, id)
	if s == nil {
		return
	}
	prev := s.Status
	c.cancelShutdown(id)
	s.Status = "deleting"
	a := c.startAction("delete_server", id, c.opts.ActionDuration, prev, func() error { return c.destroy(id) })
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Action actionJSON `json:"action"`
	}{c.actionJSON(a)})
}

// POST /servers/{id}/actions/{command}: the power actions.
func (c *Cloud) serverAction(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	command := r.PathValue("command")
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.unlockedServer(w, id)
	if s == nil {
		return
	}
	d := c.opts.ActionDuration
	prev := s.Status
	var a *action
	switch command {
	case "poweron":
		if s.Status == "off" {
			s.Status = "starting"
		}
		requested := time.Now()
		a = c.startAction("start_server", id, d, prev, func() error { return c.boot(id, requested) })
	case "poweroff":
		if s.Status != "off" {
			s.Status = "stopping"
		}
		a = c.startAction("stop_server", id, d, prev, func() error { return c.stop(id) })
	case "shutdown":
		// An ACPI request: the action only delivers it; see acpiShutdown.
		a = c.startAction("shutdown_server", id, d, prev, func() error { return c.acpiShutdown(id) })
	case "reboot", "reset":
		if s.Status != "running" {
			writeError(w, http.StatusConflict, "server_not_running", "the server is not running", nil)
			return
		}
		name := map[string]string{"reboot": "reboot_server", "reset": "reset_server"}[command]
		a = c.startAction(name, id, d, prev, func() error {
			if err := c.stopMachine(id); err != nil {
				return err
			}
			return c.boot(id, time.Now())
		})
	default:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("server action %q is not part of the local cloud's API", command), nil)
		return
	}
	if command != "shutdown" {
		c.cancelShutdown(id) // the new action decides the power state
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Action actionJSON `json:"action"`
	}{c.actionJSON(a)})
}

// setStatus moves a server from one status to the next, if it is still in
// the first (a delete may have overtaken the action).
func (c *Cloud) setStatus(id int64, from, to string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.liveServer(id)
	if err != nil {
		return err
	}
	if s.Status == from {
		s.Status = to
		return c.persist()
	}
	return nil
}

// liveServer is the server an action's effect is about, unless it was
// deleted or the cloud is closing. Callers hold c.mu.
func (c *Cloud) liveServer(id int64) (*serverRecord, error) {
	if c.closed {
		return nil, errClosed
	}
	s := c.st.server(id)
	if s == nil {
		return nil, fmt.Errorf("server %d was deleted", id)
	}
	return s, nil
}

// boot starts a server's machine unless it is running already. With a
// boot delay the server reports "running" at once, as Hetzner's does when
// the VM starts, and its machine (so its SSH port) comes up only BootDelay
// after the create or power-on request: the operating system is still
// booting. The delay runs on the real clock, as the action timers do.
func (c *Cloud) boot(id int64, requested time.Time) error {
	wait := time.Until(requested.Add(c.opts.BootDelay))
	if wait <= 0 {
		return c.bringUp(id, requested, nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.liveServer(id)
	if err != nil {
		return err
	}
	if s.Status == "deleting" {
		return fmt.Errorf("server %d is being deleted", id)
	}
	s.Status = "running"
	if c.machines[id] == nil && c.boots[id] == nil {
		b := &pendingBoot{}
		c.pending.Add(1)
		b.timer = time.AfterFunc(wait, func() {
			defer c.pending.Done()
			if err := c.bringUp(id, requested, b); err != nil {
				c.log.Warn("machine did not boot", "server_id", id, "err", err)
			}
		})
		c.boots[id] = b
	}
	return c.persist()
}

// pendingBoot is a machine whose operating system is still booting.
type pendingBoot struct{ timer *time.Timer }

// cancelBoot forgets a machine still booting, so it never comes up.
// Callers hold c.mu.
func (c *Cloud) cancelBoot(id int64) {
	if b := c.boots[id]; b != nil {
		if b.timer.Stop() {
			c.pending.Done()
		}
		delete(c.boots, id)
	}
}

// bringUp starts a server's machine unless it is running already. The
// machine starts outside the lock (an sshd takes a moment); if the server
// was deleted, stopped (its boot, when it has one, cancelled) or the cloud
// closed meanwhile, the new machine is stopped again.
func (c *Cloud) bringUp(id int64, requested time.Time, boot *pendingBoot) error {
	c.mu.Lock()
	s, err := c.liveServer(id)
	if err != nil || (boot != nil && c.boots[id] != boot) {
		c.mu.Unlock()
		return err
	}
	if c.machines[id] != nil {
		s.Status = "running"
		err = c.persist()
		c.mu.Unlock()
		return err
	}
	cfg, err := c.machineConfig(s)
	c.mu.Unlock()

	var m machine.Machine
	if err == nil {
		m, err = c.startMachine(cfg)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	s = c.st.server(id)
	switch {
	case err != nil:
		if s != nil && s.Status != "deleting" && !c.closed {
			s.Status = "off"
			_ = c.persist()
		}
		return fmt.Errorf("boot machine: %w", err)
	case c.closed || s == nil || s.Status == "deleting" || (boot != nil && c.boots[id] != boot):
		if cerr := m.Close(); cerr != nil {
			c.log.Warn("stop machine of deleted server", "server_id", id, "err", cerr)
		}
		if s == nil {
			_ = os.RemoveAll(cfg.Dir)
		}
		if c.closed {
			return errClosed
		}
		return fmt.Errorf("server %d was deleted or stopped while it booted", id)
	}
	delete(c.boots, id)
	c.setMachine(id, m)
	s.Status = "running"
	// since_request is the cloud's share of a create or start, as the
	// benchmarks read it: from the request to SSH accepting.
	c.log.Info("machine running", "server", s.Name, "addr", cfg.Addr, "since_request", time.Since(requested).Round(time.Millisecond))
	return c.persist()
}

// stopMachine ends a server's machine, if it has one, keeping its folder.
func (c *Cloud) stopMachine(id int64) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	c.cancelBoot(id)
	m := c.machines[id]
	delete(c.machines, id)
	delete(c.booted, id)
	c.mu.Unlock()
	if m == nil {
		return nil
	}
	if err := m.Close(); err != nil {
		c.log.Warn("machine did not stop cleanly", "server_id", id, "err", err)
	}
	return nil
}

// stop powers a server off.
func (c *Cloud) stop(id int64) error {
	if err := c.stopMachine(id); err != nil {
		return err
	}
	return c.setStatus(id, "stopping", "off")
}

// destroy ends a server's machine, removes its folder and forgets it.
func (c *Cloud) destroy(id int64) error {
	c.mu.Lock()
	s := c.st.server(id)
	if c.closed || s == nil {
		c.mu.Unlock()
		if s == nil {
			return nil
		}
		return errClosed
	}
	dir := c.machineDir(s.Name)
	c.mu.Unlock()

	if err := c.stopMachine(id); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove machine folder: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.removeServer(id)
	c.log.Info("server deleted", "server", s.Name, "id", id)
	return c.persist()
}
