package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

const timeLayout = "2006-01-02 15:04 MST"

var statusCommand = command{
	name:    "status",
	usage:   "status [--json]",
	summary: "show your machine and its lease",
	example: "status --json",
	run:     (*Gateway).status,
}

// statusJSON is the stable, scriptable form of status. It never carries
// the machine's private host key.
type statusJSON struct {
	State        string    `json:"state"` // "none" without a lease
	Name         string    `json:"name,omitempty"`
	LeaseID      string    `json:"lease_id,omitempty"`
	ServerID     int64     `json:"server_id,omitempty"`
	Address      string    `json:"address,omitempty"`
	HostKey      string    `json:"host_key,omitempty"`
	ServerType   string    `json:"server_type,omitempty"`
	Location     string    `json:"location,omitempty"`
	Created      time.Time `json:"created,omitzero"`
	Expires      time.Time `json:"expires,omitzero"`
	ExpiresIn    int64     `json:"expires_in_seconds"`
	LastActivity time.Time `json:"last_activity,omitzero"`
	IdleSeconds  int64     `json:"idle_seconds"`
	Sessions     int       `json:"sessions"`
	Cost         float64   `json:"cost"`               // billed so far, gross
	Currency     string    `json:"currency,omitempty"` // empty when prices are unknown
	// Agent is what the reaper last read of the running machine's agent.
	Agent *statusAgent `json:"agent,omitempty"`
	// Home is the person's home volume, which outlives the machine.
	Home *statusHome `json:"home,omitempty"`
}

type statusHome struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // creating, ready or deleting
	SizeGB   int       `json:"size_gb"`
	Location string    `json:"location"`
	Created  time.Time `json:"created"`
	// KeptUntil is when it is deleted; absent while the person has a
	// machine.
	KeptUntil time.Time `json:"kept_until,omitzero"`
	Cost      float64   `json:"cost"`
	Currency  string    `json:"currency,omitempty"`
}

type statusAgent struct {
	State string    `json:"state"` // working, waiting or idle
	Since time.Time `json:"since"` // by the machine's clock
	Seen  time.Time `json:"seen"`  // when the gateway read it
}

func (g *Gateway) status(_ context.Context, c call) int {
	asJSON := false
	for _, a := range c.args[1:] {
		if a != "--json" {
			return refuse(c, "unknown option %q; usage: status [--json]", a)
		}
		asJSON = true
	}
	p, err := g.opts.Leases.Person(c.fingerprint)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read your home volume"))
	}
	home := g.statusHome(p.Home)
	l, err := g.opts.Leases.Status(c.fingerprint)
	if errors.Is(err, lease.ErrNotFound) {
		if asJSON {
			return writeJSON(c, statusJSON{State: "none", Home: home})
		}
		fmt.Fprintf(c.stdout, "You have no machine. `%s` creates one.\n", g.opts.Invocation)
		if home != nil {
			w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
			writeHome(w, home)
			w.Flush()
		}
		return 0
	}
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read your lease"))
	}
	now := g.opts.Clock.Now()
	st := statusJSON{
		State: string(l.State), Name: l.ServerName, LeaseID: l.ID, ServerID: l.ServerID,
		Address: l.Address, HostKey: l.HostKey, ServerType: l.ServerType, Location: l.Location,
		Created: l.Created.UTC(), Expires: l.Expires.UTC(), LastActivity: l.LastActivity.UTC(),
		ExpiresIn:   int64(l.Expires.Sub(now).Seconds()),
		IdleSeconds: int64(now.Sub(l.LastActivity).Seconds()),
		Sessions:    g.Sessions(c.fingerprint),
		Home:        home,
	}
	if g.opts.Guarded {
		st.Address = "" // no use to anyone but the gateway
	}
	// A stopped machine's agent is not running, whatever it said last.
	if a := l.Agent; l.State == lease.StateRunning && a.State != "" {
		st.Agent = &statusAgent{State: string(a.State), Since: a.Since.UTC(), Seen: a.Seen.UTC()}
	}
	st.Cost, st.Currency = g.opts.Leases.Cost(l)
	if asJSON {
		return writeJSON(c, st)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "Machine\t%s (%s)\n", st.Name, st.State)
	if st.Address != "" {
		fmt.Fprintf(w, "Address\t%s\n", st.Address)
	}
	fmt.Fprintf(w, "Type\t%s in %s\n", st.ServerType, st.Location)
	fmt.Fprintf(w, "Created\t%s (%s ago)\n", st.Created.Format(timeLayout), lease.FormatDuration(now.Sub(l.Created)))
	if l.Expires.After(now) {
		fmt.Fprintf(w, "Expires\t%s (in %s)\n", st.Expires.Format(timeLayout), lease.FormatDuration(l.Expires.Sub(now)))
	} else {
		fmt.Fprintf(w, "Expires\t%s (expired)\n", st.Expires.Format(timeLayout))
	}
	fmt.Fprintf(w, "Idle for\t%s\n", lease.FormatDuration(now.Sub(l.LastActivity)))
	fmt.Fprintf(w, "Sessions\t%d\n", st.Sessions)
	if a := st.Agent; a != nil {
		fmt.Fprintf(w, "Agent\t%s since %s (seen %s ago)\n", a.State, a.Since.Format(timeLayout), lease.FormatDuration(now.Sub(a.Seen)))
	}
	fmt.Fprintf(w, "Cost so far\t%s\n", money(st.Cost, st.Currency))
	writeHome(w, home)
	w.Flush()
	return 0
}

func (g *Gateway) statusHome(h *lease.Home) *statusHome {
	if h == nil {
		return nil
	}
	out := &statusHome{Name: h.Name, State: string(h.State), SizeGB: h.SizeGB, Location: h.Location, Created: h.Created.UTC(), KeptUntil: h.KeepUntil.UTC()}
	out.Cost, out.Currency = g.opts.Leases.HomeCost(*h)
	return out
}

// writeHome adds the home's lines to status, if there is a home.
func writeHome(w io.Writer, h *statusHome) {
	if h == nil {
		return
	}
	kept := "kept while you have a machine"
	switch {
	case h.State != string(lease.HomeReady):
		kept = h.State
	case !h.KeptUntil.IsZero():
		kept = "kept until " + h.KeptUntil.Format(timeLayout) + ", then deleted"
	}
	fmt.Fprintf(w, "Home\t%s, %d GB in %s (%s)\n", h.Name, h.SizeGB, h.Location, kept)
	fmt.Fprintf(w, "Home cost\t%s so far\n", money(h.Cost, h.Currency))
}

func writeJSON(c call, v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return refuse(c, "encode: %v", err)
	}
	return 0
}
