package localcloud

import "net/http"

// updateRequest is the body of a PUT on a server or firewall: a new name,
// new labels, or both.
type updateRequest struct {
	Name   *string            `json:"name"`
	Labels *map[string]string `json:"labels"`
}

// decodeUpdate reads an updateRequest and checks its labels, answering
// the request itself when it fails.
func decodeUpdate(w http.ResponseWriter, r *http.Request) (updateRequest, bool) {
	var req updateRequest
	if !decodeBody(w, r, &req) {
		return req, false
	}
	if req.Labels != nil {
		if err := validateLabels(*req.Labels); err != nil {
			writeInvalid(w, "labels", err.Error())
			return req, false
		}
	}
	return req, true
}

// PUT /servers/{id}: replaces the server's labels, as Hetzner does (the
// warm pool relabels a machine it hands to a person). Renaming is not
// needed by the gateway, so it is refused rather than half done.
func (c *Cloud) updateServer(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	req, ok := decodeUpdate(w, r)
	if !ok {
		return
	}
	if req.Name != nil {
		writeInvalid(w, "name", "the local cloud does not rename servers")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.serverToChange(w, id)
	if s == nil {
		return
	}
	if req.Labels != nil {
		s.Labels = *req.Labels
	}
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Server serverJSON `json:"server"`
	}{c.serverView(s)})
}
