package localcloud

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Firewalls as the API keeps them. The local cloud filters no packets (its
// machines live on loopback); it keeps firewalls, their rules and what they
// are applied to, refuses what Hetzner refuses, and shows on each server
// which firewalls guard it, so the gateway's upkeep of its firewall runs
// against it as against Hetzner. Only servers can be applied to; label
// selectors are refused.

// firewallRecord is a firewall of the project.
type firewallRecord struct {
	ID      int64             `json:"id"`
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Rules   []firewallRule    `json:"rules"`
	Servers []int64           `json:"servers"` // applied to, in the order applied
	Created time.Time         `json:"created"`
}

// firewallRule is a rule on the wire and in state.json alike.
type firewallRule struct {
	Description    *string  `json:"description"`
	Direction      string   `json:"direction"`
	Protocol       string   `json:"protocol"`
	Port           *string  `json:"port"`
	SourceIPs      []string `json:"source_ips"`
	DestinationIPs []string `json:"destination_ips"`
}

type firewallServerRef struct {
	ID int64 `json:"id"`
}

type firewallSelectorRef struct {
	Selector string `json:"selector"`
}

// firewallResource is an apply_to entry, in requests and answers.
type firewallResource struct {
	Type          string               `json:"type"`
	Server        *firewallServerRef   `json:"server,omitempty"`
	LabelSelector *firewallSelectorRef `json:"label_selector,omitempty"`
}

type firewallJSON struct {
	ID        int64              `json:"id"`
	Name      string             `json:"name"`
	Labels    map[string]string  `json:"labels"`
	Created   time.Time          `json:"created"`
	Rules     []firewallRule     `json:"rules"`
	AppliedTo []firewallResource `json:"applied_to"`
}

// serverFirewallJSON is one entry of a server's public_net.firewalls.
type serverFirewallJSON struct {
	ID     int64  `json:"id"`
	Status string `json:"status"` // applied, or pending while an action applies it
}

// Hetzner's limits on rules.
const (
	maxFirewallRules   = 50
	maxRuleIPs         = 100
	maxRuleDescription = 255
	maxFirewallName    = 128
)

// The commands of firewall actions.
const (
	cmdSetRules       = "set_firewall_rules"
	cmdApplyFirewall  = "apply_firewall"
	cmdRemoveFirewall = "remove_firewall"
)

func firewallView(f *firewallRecord) firewallJSON {
	applied := make([]firewallResource, 0, len(f.Servers))
	for _, id := range f.Servers {
		applied = append(applied, firewallResource{Type: "server", Server: &firewallServerRef{ID: id}})
	}
	rules := make([]firewallRule, 0, len(f.Rules))
	for _, r := range f.Rules {
		r.SourceIPs, r.DestinationIPs = orEmpty(r.SourceIPs), orEmpty(r.DestinationIPs)
		rules = append(rules, r)
	}
	return firewallJSON{ID: f.ID, Name: f.Name, Labels: labelsView(f.Labels), Created: f.Created, Rules: rules, AppliedTo: applied}
}

// serverFirewalls is what a server's answer shows in public_net.firewalls.
// Callers hold c.mu.
func (c *Cloud) serverFirewalls(serverID int64) []serverFirewallJSON {
	list := []serverFirewallJSON{}
	for _, f := range c.st.Firewalls {
		if !slices.Contains(f.Servers, serverID) {
			continue
		}
		status := "applied"
		if c.firewallPending(f.ID, serverID) {
			status = "pending"
		}
		list = append(list, serverFirewallJSON{ID: f.ID, Status: status})
	}
	return list
}

// firewallPending reports whether an action still applies the firewall to
// the server: one of its own, or the create of the server that carries it.
// Callers hold c.mu.
func (c *Cloud) firewallPending(firewallID, serverID int64) bool {
	for _, a := range c.actions {
		if a.status != "running" {
			continue
		}
		if a.command == "create_server" && a.serverID == serverID {
			return true
		}
		if a.command == cmdApplyFirewall && slices.Contains(a.resources, actionResource{ID: firewallID, Type: "firewall"}) &&
			slices.Contains(a.resources, actionResource{ID: serverID, Type: "server"}) {
			return true
		}
	}
	return false
}

// GET /firewalls with name and label_selector filters.
func (c *Cloud) listFirewalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, ok := labelFilter(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	var list []firewallJSON
	for _, f := range c.st.Firewalls {
		if (!q.Has("name") || q.Get("name") == f.Name) && sel.matches(f.Labels) {
			list = append(list, firewallView(f))
		}
	}
	c.mu.Unlock()
	writeList(w, r, "firewalls", list, map[string]func(a, b firewallJSON) int{
		"id":      func(a, b firewallJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name":    func(a, b firewallJSON) int { return cmp.Compare(a.Name, b.Name) },
		"created": func(a, b firewallJSON) int { return a.Created.Compare(b.Created) },
	})
}

func (c *Cloud) getFirewall(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	f := c.st.firewall(id)
	var view firewallJSON
	if f != nil {
		view = firewallView(f)
	}
	c.mu.Unlock()
	if f == nil {
		writeNotFound(w, "firewall", id)
		return
	}
	writeFirewall(w, http.StatusOK, view)
}

func writeFirewall(w http.ResponseWriter, status int, view firewallJSON) {
	writeJSON(w, status, struct {
		Firewall firewallJSON `json:"firewall"`
	}{view})
}

// POST /firewalls: rules and servers to apply to are optional.
func (c *Cloud) createFirewall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name    string             `json:"name"`
		Labels  map[string]string  `json:"labels"`
		Rules   []firewallRule     `json:"rules"`
		ApplyTo []firewallResource `json:"apply_to"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if !validFirewallName(w, req.Name) {
		return
	}
	if err := validateLabels(req.Labels); err != nil {
		writeInvalid(w, "labels", err.Error())
		return
	}
	rules, ok := checkRules(w, req.Rules)
	if !ok {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		writeStateError(w, errClosed)
		return
	}
	if !c.firewallNameFree(w, req.Name, 0) {
		return
	}
	servers, ok := c.resourceServers(w, "apply_to", req.ApplyTo, http.StatusUnprocessableEntity)
	if !ok {
		return
	}
	if dup := firstDuplicate(servers); dup != 0 {
		writeError(w, http.StatusUnprocessableEntity, "server_already_added", fmt.Sprintf("server %d is given more than once", dup), nil)
		return
	}
	f := &firewallRecord{ID: c.st.NextFirewallID, Name: req.Name, Labels: req.Labels, Rules: rules, Created: c.now().UTC().Truncate(time.Second)}
	c.st.NextFirewallID++
	c.st.Firewalls = append(c.st.Firewalls, f)
	actions := []actionJSON{}
	if len(servers) > 0 {
		actions = append(actions, c.actionJSON(c.applyFirewall(f, servers)))
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	c.log.Info("firewall created", "firewall", f.Name, "id", f.ID, "servers", servers)
	writeJSON(w, http.StatusCreated, struct {
		Firewall firewallJSON `json:"firewall"`
		Actions  []actionJSON `json:"actions"`
	}{firewallView(f), actions})
}

// PUT /firewalls/{id}: name and labels.
func (c *Cloud) updateFirewall(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	req, ok := decodeUpdate(w, r)
	if !ok {
		return
	}
	if req.Name != nil && !validFirewallName(w, *req.Name) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.firewallToChange(w, id)
	if f == nil {
		return
	}
	if req.Name != nil {
		if !c.firewallNameFree(w, *req.Name, id) {
			return
		}
		f.Name = *req.Name
	}
	if req.Labels != nil {
		f.Labels = *req.Labels
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeFirewall(w, http.StatusOK, firewallView(f))
}

// DELETE /firewalls/{id}: refused while the firewall is applied, as on
// Hetzner.
func (c *Cloud) deleteFirewall(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.firewallToChange(w, id)
	if f == nil {
		return
	}
	if len(f.Servers) > 0 {
		writeError(w, http.StatusUnprocessableEntity, "resource_in_use",
			fmt.Sprintf("firewall %d is still applied to %d server(s)", id, len(f.Servers)), nil)
		return
	}
	c.st.Firewalls = slices.DeleteFunc(c.st.Firewalls, func(f *firewallRecord) bool { return f.ID == id })
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	c.log.Info("firewall deleted", "firewall", f.Name, "id", id)
	w.WriteHeader(http.StatusNoContent)
}

// POST /firewalls/{id}/actions/set_rules replaces every rule.
func (c *Cloud) setFirewallRules(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		Rules *[]firewallRule `json:"rules"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Rules == nil {
		writeInvalid(w, "rules", "rules is required; an empty list removes every rule")
		return
	}
	rules, ok := checkRules(w, *req.Rules)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.firewallToChange(w, id)
	if f == nil {
		return
	}
	f.Rules = rules
	a := c.firewallAction(cmdSetRules, f, nil, func() error { return nil })
	c.respondFirewallActions(w, a)
}

// POST /firewalls/{id}/actions/apply_to_resources
func (c *Cloud) applyToResources(w http.ResponseWriter, r *http.Request) {
	c.changeResources(w, r, "apply_to", func(f *firewallRecord, servers []int64) {
		for _, s := range servers {
			if slices.Contains(f.Servers, s) {
				writeError(w, http.StatusUnprocessableEntity, "firewall_already_applied", fmt.Sprintf("firewall %d is already applied to server %d", f.ID, s), nil)
				return
			}
		}
		c.respondFirewallActions(w, c.applyFirewall(f, servers))
	})
}

// POST /firewalls/{id}/actions/remove_from_resources: the firewall stays on
// the servers until the action ends.
func (c *Cloud) removeFromResources(w http.ResponseWriter, r *http.Request) {
	c.changeResources(w, r, "remove_from", func(f *firewallRecord, servers []int64) {
		for _, s := range servers {
			if !slices.Contains(f.Servers, s) {
				// Hetzner dropped firewall_already_removed (changelog of
				// 2025-08-04); the resource to remove from is not found.
				writeError(w, http.StatusNotFound, "firewall_resource_not_found", fmt.Sprintf("firewall %d is not applied to server %d", f.ID, s), nil)
				return
			}
		}
		id := f.ID
		a := c.firewallAction(cmdRemoveFirewall, f, servers, func() error {
			c.mu.Lock()
			defer c.mu.Unlock()
			if f := c.st.firewall(id); f != nil && !c.closed {
				f.Servers = slices.DeleteFunc(f.Servers, func(s int64) bool { return slices.Contains(servers, s) })
				return c.persist()
			}
			return nil
		})
		c.respondFirewallActions(w, a)
	})
}

// changeResources reads a request listing servers under field (apply_to,
// remove_from) for the firewall in the path, and calls change with them
// and c.mu held; on a problem it answers instead.
func (c *Cloud) changeResources(w http.ResponseWriter, r *http.Request, field string, change func(f *firewallRecord, servers []int64)) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	var req map[string][]firewallResource
	if !decodeBody(w, r, &req) {
		return
	}
	if _, ok := req[field]; !ok {
		writeInvalid(w, field, field+" is required")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.firewallToChange(w, id)
	if f == nil {
		return
	}
	if servers, ok := c.resourceServers(w, field, req[field], http.StatusNotFound); ok {
		change(f, servers)
	}
}

// applyFirewall applies f to servers at once; the servers show it pending
// until the action ends, and an action failed by injection takes it off
// again. Callers hold c.mu.
func (c *Cloud) applyFirewall(f *firewallRecord, servers []int64) *action {
	f.Servers = append(f.Servers, servers...)
	a := c.firewallAction(cmdApplyFirewall, f, servers, func() error { return nil })
	a.onFault = func() {
		f.Servers = slices.DeleteFunc(f.Servers, func(s int64) bool { return slices.Contains(servers, s) })
	}
	return a
}

// firewallAction starts an action on f and the servers. It locks no server:
// a firewall change does not keep a server from powering. Callers hold c.mu.
func (c *Cloud) firewallAction(command string, f *firewallRecord, servers []int64, effect func() error) *action {
	a := c.startAction(command, 0, c.opts.ActionDuration, "", effect)
	a.resources = []actionResource{{ID: f.ID, Type: "firewall"}}
	for _, s := range servers {
		a.resources = append(a.resources, actionResource{ID: s, Type: "server"})
	}
	return a
}

// respondFirewallActions saves the state and answers with the action.
// Callers hold c.mu.
func (c *Cloud) respondFirewallActions(w http.ResponseWriter, a *action) {
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Actions []actionJSON `json:"actions"`
	}{[]actionJSON{c.actionJSON(a)}})
}

// GET /firewalls/{id}/actions
func (c *Cloud) listFirewallActions(w http.ResponseWriter, r *http.Request) {
	c.listResourceActions(w, r, "firewall", func(id int64) bool { return c.st.firewall(id) != nil })
}

// GET /firewalls/{id}/actions/{action_id}
func (c *Cloud) getFirewallAction(w http.ResponseWriter, r *http.Request) {
	c.getResourceAction(w, r, "firewall")
}

// firewallToChange finds the firewall a request is to change; if there is
// none, or the cloud is closing, it answers so and returns nil. Callers
// hold c.mu.
func (c *Cloud) firewallToChange(w http.ResponseWriter, id int64) *firewallRecord {
	return toChange(c, w, "firewall", id, c.st.firewall(id))
}

func validFirewallName(w http.ResponseWriter, name string) bool {
	if strings.TrimSpace(name) == "" || len(name) > maxFirewallName {
		writeInvalid(w, "name", fmt.Sprintf("name is required and at most %d characters", maxFirewallName))
		return false
	}
	return true
}

// firewallNameFree answers 409 if another firewall than except has name.
// Callers hold c.mu.
func (c *Cloud) firewallNameFree(w http.ResponseWriter, name string, except int64) bool {
	for _, f := range c.st.Firewalls {
		if f.Name == name && f.ID != except {
			writeNameTaken(w, "firewall")
			return false
		}
	}
	return true
}

// resourceServers reads the servers of apply_to or remove_from entries; a
// server that does not exist is answered with missing (Hetzner uses 422 on
// create, 404 on the actions). Callers hold c.mu.
func (c *Cloud) resourceServers(w http.ResponseWriter, field string, resources []firewallResource, missing int) ([]int64, bool) {
	var ids []int64
	for _, res := range resources {
		switch {
		case res.Type == "label_selector":
			writeInvalid(w, field, "the local cloud applies firewalls to servers only, not to label selectors")
			return nil, false
		case res.Type != "server" || res.Server == nil:
			writeInvalid(w, field, `each resource needs type "server" and server.id`)
			return nil, false
		case c.st.server(res.Server.ID) == nil:
			writeError(w, missing, "firewall_resource_not_found", fmt.Sprintf("server %d not found", res.Server.ID), nil)
			return nil, false
		}
		ids = append(ids, res.Server.ID)
	}
	return ids, true
}

func firstDuplicate(ids []int64) int64 {
	seen := map[int64]bool{}
	for _, id := range ids {
		if seen[id] {
			return id
		}
		seen[id] = true
	}
	return 0
}

// checkRules validates rules as Hetzner does and returns them with their
// addresses in canonical form; on the first problem it answers 400 naming
// the rule and returns false.
func checkRules(w http.ResponseWriter, rules []firewallRule) ([]firewallRule, bool) {
	if len(rules) > maxFirewallRules {
		writeInvalid(w, "rules", fmt.Sprintf("at most %d rules", maxFirewallRules))
		return nil, false
	}
	out := make([]firewallRule, 0, len(rules))
	for i, r := range rules {
		field := fmt.Sprintf("rules[%d]", i)
		if err := checkRule(&r); err != nil {
			writeInvalid(w, field, err.Error())
			return nil, false
		}
		out = append(out, r)
	}
	return out, true
}

func checkRule(r *firewallRule) error {
	if r.Description != nil && len(*r.Description) > maxRuleDescription {
		return fmt.Errorf("description is longer than %d characters", maxRuleDescription)
	}
	switch r.Protocol {
	case "tcp", "udp":
		if r.Port == nil {
			return fmt.Errorf("port is required for protocol %s", r.Protocol)
		}
		if err := checkPort(*r.Port); err != nil {
			return err
		}
	case "icmp", "esp", "gre":
		if r.Port != nil {
			return fmt.Errorf("port is only allowed for tcp and udp, not %s", r.Protocol)
		}
	default:
		return fmt.Errorf("protocol %q is not one of tcp, udp, icmp, esp, gre", r.Protocol)
	}
	var ips, other *[]string
	switch r.Direction {
	case "in":
		ips, other = &r.SourceIPs, &r.DestinationIPs
	case "out":
		ips, other = &r.DestinationIPs, &r.SourceIPs
	default:
		return fmt.Errorf("direction %q is neither in nor out", r.Direction)
	}
	if len(*other) > 0 {
		return fmt.Errorf("direction %s takes %s only", r.Direction, map[string]string{"in": "source_ips", "out": "destination_ips"}[r.Direction])
	}
	if len(*ips) == 0 || len(*ips) > maxRuleIPs {
		return fmt.Errorf("a rule needs 1 to %d addresses", maxRuleIPs)
	}
	canonical := make([]string, 0, len(*ips))
	for _, s := range *ips {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("%q is not an address block in CIDR notation", s)
		}
		if p.Masked() != p {
			return fmt.Errorf("%q has host bits set; the network is %s", s, p.Masked())
		}
		canonical = append(canonical, p.String())
	}
	*ips, *other = canonical, []string{}
	return nil
}

// checkPort accepts a port or a range "low-high" of ports 1 to 65535.
func checkPort(s string) error {
	low, high, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(low)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(high)
	}
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return fmt.Errorf("port %q is not a port or a range of ports from 1 to 65535", s)
	}
	return nil
}

// serverFirewallRefs resolves the firewalls a create request names; on a
// problem it answers and returns false. Callers hold c.mu.
func (c *Cloud) serverFirewallRefs(w http.ResponseWriter, refs []firewallRef) ([]*firewallRecord, bool) {
	var list []*firewallRecord
	for _, ref := range refs {
		f := c.st.firewall(ref.Firewall)
		if f == nil {
			writeInvalid(w, "firewalls", fmt.Sprintf("firewall %d not found", ref.Firewall))
			return nil, false
		}
		list = append(list, f)
	}
	return list, true
}

// firewallRef is an entry of a create request's firewalls.
type firewallRef struct {
	Firewall int64 `json:"firewall"`
}

func (st *state) firewall(id int64) *firewallRecord {
	for _, f := range st.Firewalls {
		if f.ID == id {
			return f
		}
	}
	return nil
}
