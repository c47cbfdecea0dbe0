package localcloud

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// action is one asynchronous operation, as the API reports it. It stays
// "running" until its completion timer fires, then runs its effect and ends
// in "success" or "error".
type action struct {
	id        int64
	command   string
	status    string
	started   time.Time
	due       time.Time
	finished  time.Time
	errCode   string
	errMsg    string
	serverID  int64 // the server it acts on, 0 for none
	resources []actionResource
	// onFault, when set, undoes what the request began if an injected
	// fault fails the action (a half-made snapshot disappears). It runs
	// with c.mu held.
	onFault func()
}

// actionRetention bounds the memory kept for finished actions.
const actionRetention = 15 * time.Minute

// startAction records a running action and schedules its completion after
// the given time (plus any injected delay); effect runs then, outside the
// lock. fallback, when set, is the status the server returns to if the
// action fails by injection. Callers hold c.mu.
func (c *Cloud) startAction(command string, serverID int64, after time.Duration, fallback string, effect func() error) *action {
	now := c.now()
	c.pruneActions(now)
	var fault ActionFault
	if c.opts.Faults != nil {
		fault = c.opts.Faults.Action(command)
	}
	a := &action{
		id:       c.st.NextActionID,
		command:  command,
		status:   "running",
		started:  now,
		due:      now.Add(after + fault.Delay),
		serverID: serverID,
	}
	c.st.NextActionID++
	if serverID != 0 {
		a.resources = []actionResource{{ID: serverID, Type: "server"}}
	}
	c.actions[a.id] = a
	c.pending.Add(1)
	c.timers[a.id] = time.AfterFunc(a.due.Sub(now), func() { c.completeAction(a, fault, fallback, effect) })
	return a
}

func (c *Cloud) completeAction(a *action, fault ActionFault, fallback string, effect func() error) {
	defer c.pending.Done()
	var err error
	if fault.Code == "" && !fault.Ignored {
		err = effect()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.timers, a.id)
	a.finished = c.now()
	switch {
	case fault.Code != "":
		a.status, a.errCode, a.errMsg = "error", fault.Code, fault.Message
		if !c.closed {
			if s := c.st.server(a.serverID); s != nil && fallback != "" {
				s.Status = fallback
			}
			if a.onFault != nil {
				a.onFault()
			}
			_ = c.persist()
		}
	case err != nil:
		a.status, a.errCode, a.errMsg = "error", "action_failed", err.Error()
		c.log.Warn("action failed", "action", a.id, "command", a.command, "server_id", a.serverID, "err", err)
	default:
		a.status = "success"
	}
}

func (c *Cloud) pruneActions(now time.Time) {
	for id, a := range c.actions {
		if a.status != "running" && now.Sub(a.finished) > actionRetention {
			delete(c.actions, id)
		}
	}
}

// serverBusy reports whether an action is running on the server: the
// server is "locked" and the API refuses further power actions.
func (c *Cloud) serverBusy(id int64) bool {
	for _, a := range c.actions {
		if a.serverID == id && a.status == "running" {
			return true
		}
	}
	return false
}

func (c *Cloud) actionJSON(a *action) actionJSON {
	j := actionJSON{
		ID: a.id, Command: a.command, Status: a.status, Started: a.started,
		Resources: a.resources,
	}
	if j.Resources == nil {
		j.Resources = []actionResource{}
	}
	switch a.status {
	case "running":
		total := a.due.Sub(a.started)
		if total > 0 {
			j.Progress = min(99, max(0, int(100*c.now().Sub(a.started)/total)))
		}
	default:
		j.Progress = 100
		f := a.finished
		j.Finished = &f
	}
	if a.status == "error" {
		j.Error = &actionErrorJSON{Code: a.errCode, Message: a.errMsg}
	}
	return j
}

// GET /actions?id=…: Hetzner requires ids since 2025; so does the fake.
func (c *Cloud) listActions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q["id"]) == 0 {
		writeInvalid(w, "id", "at least one action id is required")
		return
	}
	ids := map[int64]bool{}
	for _, s := range q["id"] {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			writeInvalid(w, "id", "action ids must be integers")
			return
		}
		ids[id] = true
	}
	c.mu.Lock()
	var list []*action
	for id := range ids {
		if a, ok := c.actions[id]; ok {
			list = append(list, a)
		}
	}
	c.respondActions(w, r, list)
}

// GET /servers/{id}/actions
func (c *Cloud) listServerActions(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	if c.st.server(id) == nil {
		c.mu.Unlock()
		writeNotFound(w, "server", id)
		return
	}
	var list []*action
	for _, a := range c.actions {
		if a.serverID == id {
			list = append(list, a)
		}
	}
	c.respondActions(w, r, list)
}

// respondActions filters by status, sorts and pages a list of actions and
// writes it. It is called with c.mu held and releases it.
func (c *Cloud) respondActions(w http.ResponseWriter, r *http.Request, list []*action) {
	q := r.URL.Query()
	slices.SortFunc(list, func(a, b *action) int { return cmp.Compare(a.id, b.id) })
	if statuses := q["status"]; len(statuses) > 0 {
		list = slices.DeleteFunc(list, func(a *action) bool { return !slices.Contains(statuses, a.status) })
	}
	views := make([]actionJSON, 0, len(list))
	for _, a := range list {
		views = append(views, c.actionJSON(a))
	}
	c.mu.Unlock()

	writeList(w, r, "actions", views, map[string]func(a, b actionJSON) int{
		"id":       func(a, b actionJSON) int { return cmp.Compare(a.ID, b.ID) },
		"command":  func(a, b actionJSON) int { return cmp.Compare(a.Command, b.Command) },
		"status":   func(a, b actionJSON) int { return cmp.Compare(a.Status, b.Status) },
		"started":  func(a, b actionJSON) int { return a.Started.Compare(b.Started) },
		"progress": func(a, b actionJSON) int { return cmp.Compare(a.Progress, b.Progress) },
		"finished": func(a, b actionJSON) int {
			return cmp.Compare(finishedUnix(a), finishedUnix(b))
		},
	})
}

func finishedUnix(a actionJSON) int64 {
	if a.Finished == nil {
		return 0
	}
	return a.Finished.UnixNano()
}

// GET /actions/{id} and GET /servers/{id}/actions/{action_id}
func (c *Cloud) getAction(w http.ResponseWriter, r *http.Request) {
	key := "id"
	var serverID int64
	if r.PathValue("action_id") != "" {
		var ok bool
		if serverID, ok = pathID(w, r, "id"); !ok {
			return
		}
		key = "action_id"
	}
	id, ok := pathID(w, r, key)
	if !ok {
		return
	}
	c.writeAction(w, id, func(a *action) bool { return serverID == 0 || a.serverID == serverID })
}

// writeAction answers with action id if belongs says it is the one the
// path names; otherwise, or when there is none, not found.
func (c *Cloud) writeAction(w http.ResponseWriter, id int64, belongs func(*action) bool) {
	c.mu.Lock()
	a, found := c.actions[id]
	found = found && belongs(a)
	var view actionJSON
	if found {
		view = c.actionJSON(a)
	}
	c.mu.Unlock()
	if !found {
		writeNotFound(w, "action", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Action actionJSON `json:"action"`
	}{view})
}

// listResourceActions answers GET /{kind}s/{id}/actions for a resource
// that is not a server: the actions listing it. exists reports whether the
// resource is there; it is called with c.mu held.
func (c *Cloud) listResourceActions(w http.ResponseWriter, r *http.Request, kind string, exists func(id int64) bool) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	if !exists(id) {
		c.mu.Unlock()
		writeNotFound(w, kind, id)
		return
	}
	var list []*action
	for _, a := range c.actions {
		if slices.Contains(a.resources, actionResource{ID: id, Type: kind}) {
			list = append(list, a)
		}
	}
	c.respondActions(w, r, list)
}

// getResourceAction answers GET /{kind}s/{id}/actions/{action_id} for a
// resource that is not a server: the action, if it lists the resource.
func (c *Cloud) getResourceAction(w http.ResponseWriter, r *http.Request, kind string) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	actionID, ok := pathID(w, r, "action_id")
	if !ok {
		return
	}
	c.writeAction(w, actionID, func(a *action) bool {
		return slices.Contains(a.resources, actionResource{ID: id, Type: kind})
	})
}
