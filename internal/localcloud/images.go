package localcloud

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
)

// Snapshots: create_image copies the server's home folder into
// DataDir/images/<id>/home; a server created from the snapshot gets a copy
// of it as its home before it first boots. Only home is kept: everything
// else in a machine's folder is rebuilt from user_data at every boot.

// osImageSize is what a snapshot claims for the operating system on top of
// the home folder's bytes, so that cost figures look like a real snapshot's.
const osImageSize = 1.0 // GB

func (c *Cloud) imageDir(id int64) string {
	return filepath.Join(c.opts.DataDir, "images", strconv.FormatInt(id, 10))
}

func (im *imageRecord) json() imageJSON {
	j := imageJSON{
		ID: im.ID, Type: "snapshot", Status: im.Status, Description: im.Description,
		DiskSize: im.DiskSize, Created: im.Created,
		CreatedFrom: createdFromJSON{ID: im.FromID, Name: im.FromName},
		OSFlavor:    "unknown", Protection: protectionJSON{}, Labels: labelsView(im.Labels), Architecture: im.Arch,
	}
	if im.Status == "available" {
		size := im.ImageSize
		j.ImageSize = &size
	}
	return j
}

// lookupImage finds a catalog image or a snapshot by id or name; rec is
// nil for catalog images. Callers hold c.mu.
func (c *Cloud) lookupImage(ref string) (view imageJSON, rec *imageRecord, ok bool) {
	if im, found := findImage(ref); found {
		return im.json(), nil, true
	}
	id, err := strconv.ParseInt(ref, 10, 64)
	if err != nil {
		return imageJSON{}, nil, false
	}
	if rec = c.st.image(id); rec == nil {
		return imageJSON{}, nil, false
	}
	return rec.json(), rec, true
}

// imageView is what a server shows as its image: nil once a snapshot it
// was made from is deleted, as on Hetzner. Callers hold c.mu.
func (c *Cloud) imageView(id int64) *imageJSON {
	view, _, ok := c.lookupImage(strconv.FormatInt(id, 10))
	if !ok {
		return nil
	}
	return &view
}

// GET /images with name, type, status, architecture, bound_to and
// label_selector filters.
func (c *Cloud) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, ok := labelFilter(w, r)
	if !ok {
		return
	}
	var all []imageJSON
	for _, im := range images {
		all = append(all, im.json())
	}
	c.mu.Lock()
	for _, rec := range c.st.Images {
		all = append(all, rec.json())
	}
	c.mu.Unlock()

	var list []imageJSON
	for _, j := range all {
		switch {
		case q.Has("name") && (j.Name == nil || *j.Name != q.Get("name")):
		case len(q["type"]) > 0 && !slices.Contains(q["type"], j.Type):
		case len(q["status"]) > 0 && !slices.Contains(q["status"], j.Status):
		case q.Has("architecture") && q.Get("architecture") != j.Architecture:
		case len(q["bound_to"]) > 0:
			// Only backups are bound to servers, and the fake takes none.
		case !sel.matches(j.Labels):
		default:
			list = append(list, j)
		}
	}
	writeList(w, r, "images", list, map[string]func(a, b imageJSON) int{
		"id":      func(a, b imageJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name":    func(a, b imageJSON) int { return cmp.Compare(deref(a.Name), deref(b.Name)) },
		"created": func(a, b imageJSON) int { return a.Created.Compare(b.Created) },
	})
}

func (c *Cloud) getImage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	view, _, found := c.lookupImage(strconv.FormatInt(id, 10))
	c.mu.Unlock()
	if !found {
		writeNotFound(w, "image", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Image imageJSON `json:"image"`
	}{view})
}

// DELETE /images/{id}. Snapshots go at once, even while being created (the
// create_image action then fails); the catalog's images cannot be deleted.
func (c *Cloud) deleteImage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		writeStateError(w, errClosed)
		return
	}
	if c.st.image(id) == nil {
		c.mu.Unlock()
		if _, found := findImage(strconv.FormatInt(id, 10)); found {
			writeError(w, http.StatusForbidden, "forbidden", "the local cloud's catalog images cannot be deleted", nil)
			return
		}
		writeNotFound(w, "image", id)
		return
	}
	c.st.removeImage(id)
	err := c.persist()
	c.mu.Unlock()
	if err != nil {
		writeStateError(w, err)
		return
	}
	if err := os.RemoveAll(c.imageDir(id)); err != nil {
		c.log.Warn("remove folder of deleted image", "image", id, "err", err)
	}
	c.log.Info("image deleted", "image", id)
	w.WriteHeader(http.StatusNoContent)
}

// POST /servers/{id}/actions/create_image: a snapshot, "creating" until
// its action has copied the server's home.
func (c *Cloud) createImage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	var req struct {
		Description *string           `json:"description"`
		Labels      map[string]string `json:"labels"`
		Type        *string           `json:"type"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Type != nil && *req.Type != "snapshot" {
		writeInvalid(w, "type", "the local cloud takes snapshots only")
		return
	}
	if err := validateLabels(req.Labels); err != nil {
		writeInvalid(w, "labels", err.Error())
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.unlockedServer(w, id)
	if s == nil {
		return
	}
	t, _ := findServerType(s.ServerType)
	now := c.now().UTC().Truncate(time.Second)
	rec := &imageRecord{
		ID:          c.st.NextImageID,
		Status:      "creating",
		Description: fmt.Sprintf("%s-%s", s.Name, now.Format("20060102150405")),
		Labels:      req.Labels,
		DiskSize:    t.disk,
		Arch:        t.arch,
		FromID:      s.ID,
		FromName:    s.Name,
		Created:     now,
	}
	if req.Description != nil {
		rec.Description = *req.Description
	}
	c.st.NextImageID++
	c.st.Images = append(c.st.Images, rec)

	// The machine's own home, not a home volume mounted on it: a snapshot
	// is of the server's disk. Looked at when the copy starts.
	dir := c.machineDir(s.Name)
	a := c.startAction("create_image", id, c.opts.ActionDuration, "", func() error { return c.finishImage(rec.ID, machine.OwnHome(dir)) })
	a.resources = append(a.resources, actionResource{ID: rec.ID, Type: "image"})
	a.onFault = func() { c.st.removeImage(rec.ID) }
	if err := c.persist(); err != nil {
		writeStateError(w, err)
		return
	}
	c.log.Info("snapshot started", "server", s.Name, "image", rec.ID)
	writeJSON(w, http.StatusCreated, struct {
		Image  imageJSON  `json:"image"`
		Action actionJSON `json:"action"`
	}{rec.json(), c.actionJSON(a)})
}

// finishImage is create_image's effect: copy home aside, then move the
// copy into place in one rename, so a snapshot's folder is whole or absent.
func (c *Cloud) finishImage(id int64, home string) error {
	dir := c.imageDir(id)
	partial := dir + ".partial"
	size, err := func() (int64, error) {
		if err := os.RemoveAll(partial); err != nil {
			return 0, err
		}
		n, err := copyTree(home, filepath.Join(partial, machine.HomeDir))
		if err != nil {
			return 0, err
		}
		return n, os.Rename(partial, dir)
	}()
	if err != nil {
		_ = os.RemoveAll(partial)
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed {
			c.st.removeImage(id)
			_ = c.persist()
		}
		return fmt.Errorf("copy the server's disk: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.st.image(id)
	if rec == nil {
		// Deleted while it was being made.
		_ = os.RemoveAll(dir)
		return errors.New("the image was deleted while it was being created")
	}
	if c.closed {
		// The folder is whole; restore marks the image available.
		return errClosed
	}
	rec.Status = "available"
	rec.ImageSize = osImageSize + float64(size)/1e9
	c.log.Info("snapshot available", "image", id, "bytes", size)
	return c.persist()
}

// restoreImages settles snapshots interrupted by a restart: one whose
// folder was moved into place is available, any other is dropped, as a
// failed snapshot would be.
func (c *Cloud) restoreImages() {
	for _, rec := range append([]*imageRecord(nil), c.st.Images...) {
		if rec.Status == "available" {
			continue
		}
		dir := c.imageDir(rec.ID)
		_ = os.RemoveAll(dir + ".partial")
		if size, err := treeSize(filepath.Join(dir, machine.HomeDir)); err == nil {
			rec.Status = "available"
			rec.ImageSize = osImageSize + float64(size)/1e9
			continue
		}
		c.log.Warn("snapshot was interrupted by a restart; dropping it", "image", rec.ID)
		_ = os.RemoveAll(dir)
		c.st.removeImage(rec.ID)
	}
}

// stageRestore copies a snapshot's home into a fresh folder under
// DataDir/machines, to be renamed into a new server's machine folder.
func (c *Cloud) stageRestore(id int64) (string, error) {
	src := filepath.Join(c.imageDir(id), machine.HomeDir)
	staged, err := os.MkdirTemp(filepath.Join(c.opts.DataDir, "machines"), ".restore-")
	if err != nil {
		return "", err
	}
	if _, err := copyTree(src, filepath.Join(staged, machine.HomeDir)); err != nil {
		_ = os.RemoveAll(staged)
		return "", err
	}
	return staged, nil
}

// copyTree copies the folder src to dst (which must not exist): folders,
// regular files and symbolic links, keeping permissions; sockets and the
// like are skipped. A missing src copies as an empty folder. It returns the
// bytes copied.
func copyTree(src, dst string) (int64, error) {
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return 0, os.MkdirAll(dst, 0o700)
	}
	var total int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			n, err := copyFile(path, target, info.Mode().Perm())
			total += n
			return err
		default:
			return nil
		}
	})
	return total, err
}

func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// treeSize adds up the sizes of the regular files under dir, which must
// exist.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}
