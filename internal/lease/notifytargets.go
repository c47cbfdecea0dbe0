package lease

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// What one person may register to be told at: a few targets, each a URL
// of sensible length, so a person cannot make the gateway's deliveries or
// records grow without bound.
const (
	MaxNotifyTargets = 5
	MaxNotifyURL     = 512
)

// TargetError refuses a change to a person's notification targets; it is a
// sentence for the person who asked.
type TargetError struct{ Reason string }

func (e *TargetError) Error() string { return e.Reason }

// Person returns what the person keeps apart from leases.
func (m *Manager) Person(fp string) (Person, error) {
	p, err := m.cfg.Store.Person(fp)
	if err != nil {
		return p, fmt.Errorf("read person: %w", err)
	}
	return p, nil
}

// AddNotifyTarget registers rawURL as a place to tell the person things.
// Whether the gateway may reach it is the caller's check (internal/notify);
// the bounds are the domain's. Adding a target the person has is no error.
func (m *Manager) AddNotifyTarget(ctx context.Context, fp, rawURL string) (Person, error) {
	if len(rawURL) > MaxNotifyURL {
		return Person{}, &TargetError{fmt.Sprintf("the URL is %d characters long; at most %d are allowed", len(rawURL), MaxNotifyURL)}
	}
	return m.changeNotify(ctx, fp, "notify-add", rawURL, func(p *Person) error {
		if slices.ContainsFunc(p.Notify, func(t NotifyTarget) bool { return t.URL == rawURL }) {
			return errUnchanged
		}
		if len(p.Notify) >= MaxNotifyTargets {
			return &TargetError{fmt.Sprintf("you have %d notification targets, the most allowed; remove one first", len(p.Notify))}
		}
		p.Notify = append(p.Notify, NotifyTarget{URL: rawURL, Added: m.cfg.Clock.Now()})
		return nil
	})
}

// RemoveNotifyTarget forgets one of the person's targets.
func (m *Manager) RemoveNotifyTarget(ctx context.Context, fp, rawURL string) (Person, error) {
	return m.changeNotify(ctx, fp, "notify-remove", rawURL, func(p *Person) error {
		i := slices.IndexFunc(p.Notify, func(t NotifyTarget) bool { return t.URL == rawURL })
		if i < 0 {
			return &TargetError{"you have no notification target with that URL; `notify list` shows yours"}
		}
		p.Notify = slices.Delete(p.Notify, i, i+1)
		return nil
	})
}

// errUnchanged says a change has nothing to write.
var errUnchanged = errors.New("unchanged")

// changeNotify applies change to the person's targets and records it with
// an audit event of kind naming the target without its secrets.
func (m *Manager) changeNotify(ctx context.Context, fp, kind, rawURL string, change func(*Person) error) (Person, error) {
	e := Event{Time: m.cfg.Clock.Now(), Kind: kind, Fingerprint: fp, Conn: ConnOf(ctx), Detail: RedactURL(rawURL)}
	p, changed, err := m.changePerson(fp, change, e)
	if changed {
		m.logFor(ctx).Info(kind, "fingerprint", fp, "target", e.Detail)
	}
	return p, err
}

// changePerson reads the person, applies change and writes the result with
// e, all under m.person, so changes to one record (its targets, its
// secrets) never undo one another. change returns errUnchanged when there
// is nothing to write.
func (m *Manager) changePerson(fp string, change func(*Person) error, e Event) (_ Person, changed bool, _ error) {
	m.person.Lock()
	defer m.person.Unlock()
	p, err := m.Person(fp)
	if err != nil {
		return p, false, err
	}
	switch err := change(&p); {
	case errors.Is(err, errUnchanged):
		return p, false, nil
	case err != nil:
		return p, false, err
	}
	if err := m.cfg.Store.PutPerson(p, e); err != nil {
		return p, false, fmt.Errorf("save person: %w", err)
	}
	return p, true, nil
}

// RedactURL names a notification target without its secrets, for logs and
// audit events: an ntfy topic or a webhook's path is what lets anyone post
// to it, so only the scheme and host are shown, and how long the rest is.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("(a URL that does not parse, %d chars)", len(rawURL))
	}
	rest := len(u.EscapedPath()) + len(u.RawQuery)
	if u.RawQuery != "" {
		rest++
	}
	s := u.Scheme + "://" + u.Host
	if u.User != nil {
		s = u.Scheme + "://(credentials)@" + u.Host
	}
	if rest > 0 {
		s += fmt.Sprintf(" (%d chars of path)", rest)
	}
	if u.Fragment == "json" {
		s += " #json"
	}
	return s
}

// tellIfAway tells the person their machine was created or resumed
// (what) when the work did not come over a connection: a person who
// connects sees it happen, anyone else's doing (work without a connection
// of the person's) would otherwise go unnoticed, and cost money.
func (m *Manager) tellIfAway(ctx context.Context, l Lease, what string) {
	if ConnOf(ctx) != "" {
		return
	}
	m.cfg.Teller.Tell(l.Fingerprint, what, fmt.Sprintf("your machine %s was %s for you while you were away; it expires at %s",
		l.ServerName, what, l.Expires.UTC().Format("2006-01-02 15:04 MST")))
}
