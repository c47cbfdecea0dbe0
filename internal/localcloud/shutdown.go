package localcloud

import "time"

// acpiShutdown is the effect of a shutdown action. On Hetzner the action
// only delivers an ACPI request: it succeeds at once, and the server stays
// "running" until its guest has shut down, which takes seconds, or forever
// if the guest ignores the request (Faults can make it do so, see
// ActionFault.Ignored). The machine here goes off Options.ShutdownDelay
// later, unless another power action or a delete comes first.
func (c *Cloud) acpiShutdown(id int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.liveServer(id)
	if err != nil {
		return err
	}
	if s.Status != "running" || c.halts[id] != nil {
		return nil // nothing to shut down, or on its way down already
	}
	var t *time.Timer
	c.pending.Add(1)
	t = time.AfterFunc(c.opts.ShutdownDelay, func() {
		defer c.pending.Done()
		c.mu.Lock()
		current := c.halts[id] == t
		if current {
			delete(c.halts, id)
		}
		c.mu.Unlock()
		if !current {
			return // cancelled meanwhile
		}
		if err := c.stopMachine(id); err != nil {
			return
		}
		if err := c.setStatus(id, "running", "off"); err != nil {
			c.log.Warn("record shutdown", "server_id", id, "err", err)
		}
	})
	c.halts[id] = t
	return nil
}

// cancelShutdown forgets a machine's pending ACPI shutdown, if any.
// Callers hold c.mu.
func (c *Cloud) cancelShutdown(id int64) {
	t := c.halts[id]
	if t == nil {
		return
	}
	delete(c.halts, id)
	if t.Stop() {
		c.pending.Done()
	}
}
