package localcloud

import (
	"cmp"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

func sshKeyView(k *sshKeyRecord) sshKeyJSON {
	return sshKeyJSON{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Labels: labelsView(k.Labels), Created: k.Created}
}

// GET /ssh_keys with name, fingerprint and label_selector filters.
func (c *Cloud) listSSHKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, ok := labelFilter(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	var list []sshKeyJSON
	for _, k := range c.st.SSHKeys {
		switch {
		case q.Has("name") && q.Get("name") != k.Name:
		case q.Has("fingerprint") && q.Get("fingerprint") != k.Fingerprint:
		case !sel.matches(k.Labels):
		default:
			list = append(list, sshKeyView(k))
		}
	}
	c.mu.Unlock()
	writeList(w, r, "ssh_keys", list, map[string]func(a, b sshKeyJSON) int{
		"id":   func(a, b sshKeyJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name": func(a, b sshKeyJSON) int { return cmp.Compare(a.Name, b.Name) },
	})
}

func (c *Cloud) getSSHKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	k := c.st.sshKey(id)
	var view sshKeyJSON
	if k != nil {
		view = sshKeyView(k)
	}
	c.mu.Unlock()
	if k == nil {
		writeNotFound(w, "ssh_key", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		SSHKey sshKeyJSON `json:"ssh_key"`
	}{view})
}

// POST /ssh_keys. Like Hetzner, a project holds each key (by fingerprint)
// and each name only once; a second attempt is a uniqueness_error.
func (c *Cloud) createSSHKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string            `json:"name"`
		PublicKey string            `json:"public_key"`
		Labels    map[string]string `json:"labels"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 128 {
		writeInvalid(w, "name", "name is required and at most 128 characters")
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		writeInvalid(w, "public_key", "not a valid SSH public key")
		return
	}
	if err := validateLabels(req.Labels); err != nil {
		writeInvalid(w, "labels", err.Error())
		return
	}
	fp := ssh.FingerprintLegacyMD5(pub)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.st.SSHKeys {
		if k.Fingerprint == fp {
			writeError(w, http.StatusConflict, "uniqueness_error", "SSH key with the same fingerprint already exists",
				fieldErrors{Fields: []fieldError{{Name: "public_key", Messages: []string{"already exists"}}}})
			return
		}
		if k.Name == req.Name {
			writeError(w, http.StatusConflict, "uniqueness_error", "SSH key with the same name already exists",
				fieldErrors{Fields: []fieldError{{Name: "name", Messages: []string{"already exists"}}}})
			return
		}
	}
	k := &sshKeyRecord{
		ID:          c.st.NextKeyID,
		Name:        req.Name,
		Fingerprint: fp,
		PublicKey:   strings.TrimSpace(req.PublicKey),
		Labels:      req.Labels,
		Created:     c.now().UTC().Truncate(time.Second),
	}
	c.st.NextKeyID++
	c.st.SSHKeys = append(c.st.SSHKeys, k)
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		SSHKey sshKeyJSON `json:"ssh_key"`
	}{sshKeyView(k)})
}

func (c *Cloud) deleteSSHKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.sshKey(id) == nil {
		writeNotFound(w, "ssh_key", id)
		return
	}
	var kept []*sshKeyRecord
	for _, k := range c.st.SSHKeys {
		if k.ID != id {
			kept = append(kept, k)
		}
	}
	c.st.SSHKeys = kept
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
