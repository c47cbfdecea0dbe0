package localcloud

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxBodySize bounds request bodies; user_data alone may be 32 KiB.
const maxBodySize = 1 << 20

func (c *Cloud) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/servers", c.listServers)
	mux.HandleFunc("POST /v1/servers", c.createServer)
	mux.HandleFunc("GET /v1/servers/{id}", c.getServer)
	mux.HandleFunc("PUT /v1/servers/{id}", c.updateServer)
	mux.HandleFunc("DELETE /v1/servers/{id}", c.deleteServer)
	mux.HandleFunc("GET /v1/servers/{id}/actions", c.listServerActions)
	mux.HandleFunc("GET /v1/servers/{id}/actions/{action_id}", c.getAction)
	mux.HandleFunc("POST /v1/servers/{id}/actions/create_image", c.createImage)
	mux.HandleFunc("POST /v1/servers/{id}/actions/{command}", c.serverAction)
	mux.HandleFunc("GET /v1/servers/{id}/metrics", c.serverMetrics)
	mux.HandleFunc("GET /v1/actions", c.listActions)
	mux.HandleFunc("GET /v1/actions/{id}", c.getAction)
	mux.HandleFunc("GET /v1/ssh_keys", c.listSSHKeys)
	mux.HandleFunc("POST /v1/ssh_keys", c.createSSHKey)
	mux.HandleFunc("GET /v1/ssh_keys/{id}", c.getSSHKey)
	mux.HandleFunc("DELETE /v1/ssh_keys/{id}", c.deleteSSHKey)
	mux.HandleFunc("GET /v1/firewalls", c.listFirewalls)
	mux.HandleFunc("POST /v1/firewalls", c.createFirewall)
	mux.HandleFunc("GET /v1/firewalls/{id}", c.getFirewall)
	mux.HandleFunc("PUT /v1/firewalls/{id}", c.updateFirewall)
	mux.HandleFunc("DELETE /v1/firewalls/{id}", c.deleteFirewall)
	mux.HandleFunc("GET /v1/firewalls/{id}/actions", c.listFirewallActions)
	mux.HandleFunc("GET /v1/firewalls/{id}/actions/{action_id}", c.getFirewallAction)
	mux.HandleFunc("POST /v1/firewalls/{id}/actions/set_rules", c.setFirewallRules)
	mux.HandleFunc("POST /v1/firewalls/{id}/actions/apply_to_resources", c.applyToResources)
	mux.HandleFunc("POST /v1/firewalls/{id}/actions/remove_from_resources", c.removeFromResources)
	mux.HandleFunc("GET /v1/volumes", c.listVolumes)
	mux.HandleFunc("POST /v1/volumes", c.createVolume)
	mux.HandleFunc("GET /v1/volumes/{id}", c.getVolume)
	mux.HandleFunc("PUT /v1/volumes/{id}", c.updateVolume)
	mux.HandleFunc("DELETE /v1/volumes/{id}", c.deleteVolume)
	mux.HandleFunc("GET /v1/volumes/{id}/actions", c.listVolumeActions)
	mux.HandleFunc("GET /v1/volumes/{id}/actions/{action_id}", c.getVolumeAction)
	mux.HandleFunc("POST /v1/volumes/{id}/actions/attach", c.attachVolume)
	mux.HandleFunc("POST /v1/volumes/{id}/actions/detach", c.detachVolume)
	mux.HandleFunc("POST /v1/volumes/{id}/actions/resize", c.resizeVolume)
	mux.HandleFunc("GET /v1/images", c.listImages)
	mux.HandleFunc("GET /v1/images/{id}", c.getImage)
	mux.HandleFunc("DELETE /v1/images/{id}", c.deleteImage)
	mux.HandleFunc("GET /v1/server_types", c.listServerTypes)
	mux.HandleFunc("GET /v1/server_types/{id}", c.getServerType)
	mux.HandleFunc("GET /v1/locations", listLocations)
	mux.HandleFunc("GET /v1/locations/{id}", getLocation)
	mux.HandleFunc("GET /v1/pricing", getPricing)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s %s is not part of the local cloud's API", r.Method, r.URL.Path), nil)
	})

	limit := newBucket(c.opts.RateLimit, c.now)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "unable to authenticate", nil)
			return
		}
		// The bucket is the project's, so only requests with its token
		// spend from it.
		if !limit.take(w) {
			return
		}
		if c.opts.Faults != nil && c.opts.Faults.Request(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (c *Cloud) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(c.token)) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "encode response: "+err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, message string, details any) {
	b, _ := json.Marshal(errorBody{Error: apiError{Code: code, Message: message, Details: details}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type fieldErrors struct {
	Fields []fieldError `json:"fields"`
}

type fieldError struct {
	Name     string   `json:"name"`
	Messages []string `json:"messages"`
}

// writeInvalid answers 400 invalid_input naming the offending field, in
// Hetzner's details format.
func writeInvalid(w http.ResponseWriter, field, message string) {
	writeError(w, http.StatusBadRequest, "invalid_input", "invalid input in field '"+field+"'",
		fieldErrors{Fields: []fieldError{{Name: field, Messages: []string{message}}}})
}

// writeNameTaken answers 409 uniqueness_error: another resource of kind
// has the name asked for.
func writeNameTaken(w http.ResponseWriter, kind string) {
	writeError(w, http.StatusConflict, "uniqueness_error", kind+" name is already used",
		fieldErrors{Fields: []fieldError{{Name: "name", Messages: []string{"already used"}}}})
}

// toChange returns rec, the resource of kind a request is to change,
// unless there is none or the cloud is closing: then it answers so and
// returns nil. Callers hold c.mu.
func toChange[T any](c *Cloud, w http.ResponseWriter, kind string, id int64, rec *T) *T {
	if rec == nil {
		writeNotFound(w, kind, id)
		return nil
	}
	if c.closed {
		writeStateError(w, errClosed)
		return nil
	}
	return rec
}

func writeNotFound(w http.ResponseWriter, kind string, id int64) {
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s with ID '%d' not found", kind, id), nil)
}

func writeLocked(w http.ResponseWriter) {
	writeError(w, http.StatusLocked, "locked", "server is locked", nil)
}

func writeStateError(w http.ResponseWriter, err error) {
	if errors.Is(err, errClosed) {
		writeError(w, http.StatusServiceUnavailable, "service_error", err.Error(), nil)
		return
	}
	writeError(w, http.StatusInternalServerError, "server_error", "the local cloud could not save its state", nil)
}

func pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id < 1 {
		writeInvalid(w, name, "must be a positive integer")
		return 0, false
	}
	return id, true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "json_error", "read request body: "+err.Error(), nil)
		return false
	}
	if len(body) > maxBodySize {
		writeError(w, http.StatusBadRequest, "json_error", "request body is too large", nil)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "json_error", "invalid JSON in request body: "+err.Error(), nil)
		return false
	}
	return true
}

// idOrName reads a JSON value that may be an integer id or a name.
func idOrName(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return strconv.FormatInt(n, 10), nil
	}
	return "", errors.New("must be an id or a name")
}

// paginate cuts one page out of items per the page and per_page query
// parameters (Hetzner: default 25, at most 50 per page).
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) ([]T, meta, bool) {
	q := r.URL.Query()
	page, perPage := 1, 25
	if s := q.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeInvalid(w, "page", "must be a positive integer")
			return nil, meta{}, false
		}
		page = n
	}
	if s := q.Get("per_page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeInvalid(w, "per_page", "must be a positive integer")
			return nil, meta{}, false
		}
		perPage = min(n, 50)
	}
	total := len(items)
	last := max(1, (total+perPage-1)/perPage)
	p := pagination{Page: page, PerPage: perPage, LastPage: &last, TotalEntries: &total}
	if page > 1 {
		prev := min(page-1, last)
		p.PreviousPage = &prev
	}
	if page < last {
		next := page + 1
		p.NextPage = &next
	}
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	return items[start:end], meta{Pagination: p}, true
}

// writeList answers a list request: items sorted by the sort parameters
// (keys names the fields one may sort by), then one page of them under
// field, with the pagination meta.
func writeList[T any](w http.ResponseWriter, r *http.Request, field string, items []T, keys map[string]func(a, b T) int) {
	if err := sortList(items, r.URL.Query()["sort"], keys); err != nil {
		writeInvalid(w, "sort", err.Error())
		return
	}
	writePage(w, r, field, items)
}

// writePage answers a list request that takes no sort parameter: one page
// of items under field, with the pagination meta.
func writePage[T any](w http.ResponseWriter, r *http.Request, field string, items []T) {
	page, m, ok := paginate(w, r, items)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{field: orEmpty(page), "meta": m})
}

// sortList orders items by the API's sort parameters ("name", "id:desc");
// items start in id order, which is also the API's default.
func sortList[T any](items []T, sorts []string, keys map[string]func(a, b T) int) error {
	type order struct {
		cmp  func(a, b T) int
		desc bool
	}
	var orders []order
	for _, s := range sorts {
		field, dir, _ := strings.Cut(s, ":")
		f, ok := keys[field]
		if !ok || (dir != "" && dir != "asc" && dir != "desc") {
			return fmt.Errorf("cannot sort by %q", s)
		}
		orders = append(orders, order{f, dir == "desc"})
	}
	slices.SortStableFunc(items, func(a, b T) int {
		for _, o := range orders {
			if n := o.cmp(a, b); n != 0 {
				if o.desc {
					return -n
				}
				return n
			}
		}
		return 0
	})
	return nil
}

// labelFilter parses the label_selector parameter; a nil selector matches
// everything.
func labelFilter(w http.ResponseWriter, r *http.Request) (selector, bool) {
	s := r.URL.Query().Get("label_selector")
	if s == "" {
		return nil, true
	}
	sel, err := parseSelector(s)
	if err != nil {
		writeInvalid(w, "label_selector", err.Error())
		return nil, false
	}
	return sel, true
}
