package bootstrap

// These tests run the nix-side bootstrap script, the one the NixOS image runs
// before sshd, against documents this package renders, with the metadata
// service served on loopback and a temporary root: the two sides of the
// contract cannot drift apart unnoticed.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"golang.org/x/crypto/ssh"
)

// scriptPath is the bootstrap script of the NixOS image.
const scriptPath = "../../nix/modules/cloud-instance/bootstrap.sh"

// scriptTimeout bounds one run of the script.
const scriptTimeout = 30 * time.Second

// The instance users in the test root's passwd file.
const (
	instanceUID = 4242
	instanceGID = 4343
	longUser    = "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu" // 32 characters, the longest name
	longUserUID = 4244
)

// dash is /bin/sh on Debian and what the NixOS unit runs the script with.
var dash = []string{"dash"}

// machine is a temporary root for the script, holding what a NixOS root
// holds before the script runs: a passwd file with the instance user, and a
// stand-in for the kernel's hostname file.
type machine struct {
	root   string
	tmp    string // the script's TMPDIR, which it must leave empty
	home   string
	marker string // the file hostile input tries to create
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	m := &machine{root: t.TempDir(), tmp: t.TempDir(), home: t.TempDir()}
	m.marker = filepath.Join(t.TempDir(), "executed")
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nclaude:x:%d:%d::/home/claude:/bin/zsh\n%s:x:%d:%d::/home/u:/bin/sh\n",
		instanceUID, instanceGID, longUser, longUserUID, instanceGID)
	for _, d := range []string{"etc", "proc/sys/kernel"} {
		if err := os.MkdirAll(filepath.Join(m.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(m.root, "etc/passwd"), passwd, 0o644)
	writeFile(t, filepath.Join(m.root, "proc/sys/kernel/hostname"), "localhost", 0o644)
	// MkdirTemp makes private folders; the tree must not depend on the umask.
	for _, d := range []string{"etc", "proc", "proc/sys", "proc/sys/kernel"} {
		if err := os.Chmod(filepath.Join(m.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// scriptResult is how a run of the script ended.
type scriptResult struct {
	code   int
	stderr string
}

// run runs the script under shell against the user_data at url. Later
// entries of env override earlier ones.
func (m *machine) run(t *testing.T, shell []string, url string, env ...string) scriptResult {
	t.Helper()
	return m.runMode(t, shell, nil, nil, append([]string{"CLOUD_INSTANCE_METADATA_URL=" + url}, env...)...)
}

// runMode runs the script under shell with args and stdin (nil: none).
func (m *machine) runMode(t *testing.T, shell, args []string, stdin []byte, env ...string) scriptResult {
	t.Helper()
	return m.runScript(t, scriptPath, shell, args, stdin, env...)
}

// runScript runs one of the image's scripts under shell on m, with args
// and stdin (nil: none).
func (m *machine) runScript(t *testing.T, script string, shell, args []string, stdin []byte, env ...string) scriptResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell[0], append(append(shell[1:len(shell):len(shell)], script), args...)...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + m.home,
		"TMPDIR=" + m.tmp,
		"CLOUD_INSTANCE_ROOT=" + m.root,
		"CLOUD_INSTANCE_FETCH_ATTEMPTS=1",
		"CLOUD_INSTANCE_FETCH_PAUSE=0",
		"CLOUD_INSTANCE_USER=claude",
	}, env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run %s: %v", script, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s; stderr:\n%s", script, scriptTimeout, stderr.String())
	}
	t.Logf("script exit %d; stderr:\n%s", cmd.ProcessState.ExitCode(), stderr.String())
	if stdout.Len() > 0 {
		t.Errorf("script wrote to stdout: %q", stdout.String())
	}
	// The scratch folder held the private host key.
	if left, _ := os.ReadDir(m.tmp); len(left) > 0 {
		t.Errorf("script left %d entries in TMPDIR, e.g. %s", len(left), left[0].Name())
	}
	if _, err := os.Stat(m.marker); err == nil {
		t.Errorf("document content was executed: %s exists", m.marker)
	}
	return scriptResult{code: cmd.ProcessState.ExitCode(), stderr: stderr.String()}
}

// serveUserData serves body as the metadata service's user_data on
// loopback. With announce, the response names its length; otherwise it is
// chunked, so the client learns the size only while reading.
func serveUserData(t *testing.T, body string, announce bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hetzner/v1/userdata" {
			http.NotFound(w, r)
			return
		}
		if announce {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write([]byte(body))
			return
		}
		half := len(body) / 2
		w.Write([]byte(body[:half]))
		http.NewResponseController(w).Flush()
		w.Write([]byte(body[half:]))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hetzner/v1/userdata"
}

// serveStatus serves only the given HTTP status, as a metadata service
// without user_data might.
func serveStatus(t *testing.T, code int) string {
	t.Helper()
	url, _ := serveAfter(t, math.MaxInt, code, "")
	return url
}

// closedURL is a loopback URL on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hetzner/v1/userdata"
}

// entry is one file or folder of a tree: type, permissions, owner and, for
// files, content.
type entry struct {
	mode     fs.FileMode
	uid, gid int
	content  string
}

func (e entry) String() string {
	s := fmt.Sprintf("%v %d:%d", e.mode, e.uid, e.gid)
	if e.mode.IsRegular() {
		s += fmt.Sprintf(" %q", e.content)
	}
	return s
}

// owners reports whether this run can give files away, and so whether
// ownership is asserted.
func owners() bool { return os.Geteuid() == 0 }

func dirEntry(mode fs.FileMode, uid, gid int) entry {
	return entry{mode: fs.ModeDir | mode, uid: uid, gid: gid}
}

func fileEntry(mode fs.FileMode, content string) entry {
	return entry{mode: mode, content: content}
}

// snapshot reads every entry under root.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	tree := map[string]entry{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		e := entry{mode: info.Mode()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && owners() {
			e.uid, e.gid = int(st.Uid), int(st.Gid)
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			e.content = string(b)
		}
		rel, _ := filepath.Rel(root, path)
		tree[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// compareTrees fails the test with every difference between got and want.
func compareTrees(t *testing.T, got, want map[string]entry) {
	t.Helper()
	var paths []string
	for p := range got {
		paths = append(paths, p)
	}
	for p := range want {
		if _, ok := got[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		g, gok := got[p]
		w, wok := want[p]
		switch {
		case !wok:
			t.Errorf("%s: unexpected %v", p, g)
		case !gok:
			t.Errorf("%s: missing, want %v", p, w)
		case g != w:
			t.Errorf("%s:\n  got  %v\n  want %v", p, g, w)
		}
	}
}

// applied returns the tree the script should leave after applying doc to a
// machine whose tree was before, with expires in the expires file.
func applied(before map[string]entry, doc Document, expires string) map[string]entry {
	want := make(map[string]entry, len(before)+12)
	for p, e := range before {
		want[p] = e
	}
	want["etc/ssh"] = dirEntry(0o755, 0, 0)
	want["etc/ssh/ssh_host_ed25519_key"] = fileEntry(0o600, doc.HostKey.Private)
	want["etc/ssh/ssh_host_ed25519_key.pub"] = fileEntry(0o644, doc.HostKey.Public+"\n")
	want["etc/ssh/authorized_keys.bootstrap"] = dirEntry(0o755, 0, 0)
	want["etc/ssh/authorized_keys.bootstrap/"+doc.User] = fileEntry(0o644, strings.Join(doc.AuthorizedKeys, "\n")+"\n")
	hostname := want["proc/sys/kernel/hostname"]
	hostname.content = doc.Hostname
	want["proc/sys/kernel/hostname"] = hostname
	return withInstance(want, doc.User, doc.InstanceID, expires)
}

// withInstance adds the instance id and expiry files to want, in a folder
// owned by user.
func withInstance(want map[string]entry, user, id, expires string) map[string]entry {
	owner := dirEntry(0o755, 0, 0)
	if owners() {
		owner.uid, owner.gid = instanceUID, instanceGID
		if user == longUser {
			owner.uid = longUserUID
		}
	}
	want["etc/cloud-instance"] = owner
	want["etc/cloud-instance/id"] = fileEntry(0o644, id+"\n")
	want["etc/cloud-instance/expires"] = fileEntry(0o644, expires+"\n")
	want["var"] = dirEntry(0o755, 0, 0)
	want["var/lib"] = dirEntry(0o755, 0, 0)
	want["var/lib/cloud-instance"] = dirEntry(0o700, 0, 0)
	want["var/lib/cloud-instance/expires.applied"] = fileEntry(0o600, expires+"\n")
	return want
}

// keyWithComment parses an authorized_keys line with a comment, as the
// gateway does with a person's key.
func keyWithComment(t *testing.T, comment string) ssh.PublicKey {
	t.Helper()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(testkit.NewKey(t).Public()))) + " " + comment
	k, got, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || got != comment {
		t.Fatalf("parse key with comment %q: comment %q, %v", comment, got, err)
	}
	return k
}

func TestScriptAppliesRenderedDocuments(t *testing.T) {
	t.Parallel()
	if !owners() {
		t.Log("not running as root: ownership is not asserted")
	}
	expires := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name  string
		shell []string
		doc   func(t *testing.T, m *machine) Document
		// render turns the document into user_data; nil means Render.
		render func(d Document) (string, error)
		env    []string
		stderr string // a line the script must log
	}{{
		name:  "ed25519 keys and an expiry",
		shell: dash,
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, "3f2a9b1c0d", "cc-3f2a9b1c0d", "claude", expires, 22, testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
		},
	}, {
		name:  "under bash as a POSIX shell",
		shell: []string{"bash", "--posix"},
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, "b1", "cc-b1", "claude", expires, 22, testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
		},
	}, {
		name:  "largest keys and fields",
		shell: dash,
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, strings.Repeat("a", 63), strings.Repeat("b", 63), longUser, expires, 65535, bigRSAKey(t), bigRSAKey(t))
		},
		env:    []string{"CLOUD_INSTANCE_USER=" + longUser},
		stderr: "the gateway's --machine-ssh-port must match",
	}, {
		name:  "unusual key comments, which the gateway drops",
		shell: dash,
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, "c1", "cc-c1", "claude", expires, 22,
				keyWithComment(t, "evil $(touch "+m.marker+"); `touch "+m.marker+"` | rm -rf / & 'q' \"dq\" \\"),
				keyWithComment(t, "naïve user@höst ✓"))
		},
	}, {
		name:  "no expiry",
		shell: dash,
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, "n1", "cc-n1", "claude", time.Time{}, 22, testkit.NewKey(t).Public())
		},
	}, {
		name:  "infect user_data",
		shell: dash,
		doc: func(t *testing.T, m *machine) Document {
			return newDoc(t, "i1", "cc-i1", "claude", expires, 22, testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
		},
		render: func(d Document) (string, error) { return d.RenderInfect(InfectOptions{Flake: testFlake}) },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			doc := tt.doc(t, m)
			render := tt.render
			if render == nil {
				render = Document.Render
			}
			userData, err := render(doc)
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, m.root)
			res := m.run(t, tt.shell, serveUserData(t, userData, true), tt.env...)
			if res.code != 0 {
				t.Fatalf("exit status %d, want 0", res.code)
			}
			compareTrees(t, snapshot(t, m.root), applied(before, doc, doc.ExpiresAt))
			if !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("stderr does not say %q", tt.stderr)
			}
		})
	}
}

func newDoc(t *testing.T, id, hostname, user string, expires time.Time, port int, keys ...ssh.PublicKey) Document {
	t.Helper()
	d, err := New(id, hostname, user, expires, port, keys, testkit.NewKey(t).PEM)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestScriptRefusesHostileDocuments(t *testing.T) {
	t.Parallel()
	good := newDoc(t, "h1", "cc-h1", "claude", time.Now(), 22, testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
	rendered, err := good.Render()
	if err != nil {
		t.Fatal(err)
	}
	key := good.AuthorizedKeys[0]
	blob := strings.Fields(key)[1]
	other := newDoc(t, "h2", "cc-h2", "claude", time.Now(), 22, testkit.NewKey(t).Public())
	// edited is the good document with one change made by edit.
	edited := func(edit func(d map[string]any)) string {
		var d map[string]any
		if err := json.Unmarshal([]byte(rendered), &d); err != nil {
			t.Fatal(err)
		}
		edit(d)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Each payload would create the marker file if anything ran it; the
	// marker differs per subtest, so MARKER is replaced there.
	const touch = "touch MARKER"
	const badKey = "an authorized key is not a bare key of a known type"
	const badHome = "home_device is not a Hetzner volume's /dev/disk/by-id/scsi-0HC_Volume_ID path"
	tests := []struct {
		name     string
		userData string
		reason   string // what the script must say
	}{
		{"key comment with shell metacharacters", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{key + " $(" + touch + ");`" + touch + "`"}
		}), badKey},
		{"key with a newline smuggling a second key", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{key + "\ncommand=\"" + touch + "\" " + key}
		}), badKey},
		{"key with options", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{`command="` + touch + `" ` + key}
		}), badKey},
		{"key with a carriage return", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{key + "\r"}
		}), badKey},
		{"key of an unknown type", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{"ssh-foo " + blob}
		}), badKey},
		{"key whose blob is of another type", edited(func(d map[string]any) {
			d["authorized_keys"] = []any{key, "ssh-rsa " + blob}
		}), "authorized key 2 is not a key ssh-keygen reads"},
		{"keys that are not a list", edited(func(d map[string]any) { d["authorized_keys"] = key }),
			"authorized_keys is not a list of keys"},
		{"no keys", edited(func(d map[string]any) { d["authorized_keys"] = []any{} }),
			"authorized_keys is not a list of keys"},
		{"missing keys", edited(func(d map[string]any) { delete(d, "authorized_keys") }),
			"authorized_keys is not a list of keys"},
		{"user with a slash", edited(func(d map[string]any) { d["user"] = "../root" }),
			"user is not a valid user name"},
		{"user root, not the instance user", edited(func(d map[string]any) { d["user"] = "root" }),
			"the document is for user root, but this machine's instance user is claude"},
		{"instance id with a command substitution", edited(func(d map[string]any) { d["instance_id"] = "$(" + touch + ")" }),
			"instance_id is not a valid instance id"},
		{"hostname with backquotes", edited(func(d map[string]any) { d["hostname"] = "cc-`" + touch + "`" }),
			"hostname is not a valid hostname"},
		{"expiry with a command", edited(func(d map[string]any) { d["expires_at"] = "never; " + touch }),
			"expires_at is neither an RFC 3339 time"},
		{"host key halves that do not match", edited(func(d map[string]any) {
			d["host_key"] = map[string]any{"public": other.HostKey.Public, "private": good.HostKey.Private}
		}), "the host key's halves do not match"},
		{"host key private half with a payload", edited(func(d map[string]any) {
			d["host_key"] = map[string]any{"public": good.HostKey.Public,
				"private": "-----BEGIN OPENSSH PRIVATE KEY-----\n$(" + touch + ")\n-----END OPENSSH PRIVATE KEY-----\n"}
		}), "host_key.private is not an OpenSSH private key"},
		{"host key private half that is base64 but no key", edited(func(d map[string]any) {
			d["host_key"] = map[string]any{"public": good.HostKey.Public,
				"private": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}
		}), "host_key.private is not a key ssh-keygen reads"},
		{"host key with a third field", edited(func(d map[string]any) {
			d["host_key"] = map[string]any{"public": good.HostKey.Public, "private": good.HostKey.Private, "run": touch}
		}), "host_key does not have exactly a public and a private half"},
		{"missing host key", edited(func(d map[string]any) { delete(d, "host_key") }),
			"host_key does not have exactly a public and a private half"},
		{"unknown field", edited(func(d map[string]any) { d["run"] = touch }), "it has unknown fields"},
		{"version 2", edited(func(d map[string]any) { d["version"] = 2 }), "its version is not 1"},
		{"port with a command", edited(func(d map[string]any) { d["ssh_port"] = "22; " + touch }),
			"ssh_port is not a port number"},
		{"port out of range", edited(func(d map[string]any) { d["ssh_port"] = 70000 }),
			"ssh_port is not a port number"},
		{"home device that is the root disk", edited(func(d map[string]any) { d["home_device"] = "/dev/sda" }), badHome},
		{"home device that is empty", edited(func(d map[string]any) { d["home_device"] = "" }), badHome},
		{"home device with a second device", edited(func(d map[string]any) {
			d["home_device"] = "/dev/disk/by-id/scsi-0HC_Volume_4711 /dev/sda"
		}), badHome},
		{"home device with a newline", edited(func(d map[string]any) {
			d["home_device"] = "/dev/disk/by-id/scsi-0HC_Volume_4711\n/dev/sda"
		}), badHome},
		{"home device with a command", edited(func(d map[string]any) {
			d["home_device"] = "/dev/disk/by-id/scsi-0HC_Volume_$(" + touch + ")"
		}), badHome},
		{"home device that is a number", edited(func(d map[string]any) { d["home_device"] = 4711 }), badHome},
		{"home device in a pool document", edited(func(d map[string]any) {
			d["pool"], d["home_device"] = true, "/dev/disk/by-id/scsi-0HC_Volume_4711"
		}), "a pool document has a home_device"},
		{"two documents in one", rendered + rendered, "it is not one JSON object"},
		{"not JSON", "{version: 1, $(" + touch + ")}", "neither a bootstrap document nor a script holding one"},
		{"infect script with a hostile document line",
			"#!/bin/sh\n" + infectMarker + "\n$(" + touch + ")\n" + infectEnd + "\n",
			"neither a bootstrap document nor a script holding one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			before := snapshot(t, m.root)
			res := m.run(t, dash, serveUserData(t, strings.ReplaceAll(tt.userData, "MARKER", m.marker), true))
			if res.code == 0 {
				t.Fatal("script accepted it")
			}
			if !strings.Contains(res.stderr, tt.reason) || !strings.Contains(res.stderr, "refusing") {
				t.Errorf("stderr does not say it refuses the document because %s", tt.reason)
			}
			compareTrees(t, snapshot(t, m.root), before)
		})
	}

	// Valid but for its size: only the size check refuses it.
	oversized := rendered + strings.Repeat(" ", MaxSize)
	for _, announce := range []bool{true, false} {
		t.Run(fmt.Sprintf("oversized, length announced %v", announce), func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			before := snapshot(t, m.root)
			res := m.run(t, dash, serveUserData(t, oversized, announce))
			if res.code == 0 || !strings.Contains(res.stderr, "over the 32768 byte limit; refusing it") {
				t.Fatalf("exit status %d, want the size limit named", res.code)
			}
			compareTrees(t, snapshot(t, m.root), before)
		})
	}
}

func TestScriptWithoutDocument(t *testing.T) {
	t.Parallel()
	staticID := []string{"CLOUD_INSTANCE_STATIC_ID=static-1"}
	tests := []struct {
		name     string
		url      func(t *testing.T, m *machine) string
		env      []string
		expires  string // "" when nothing is written
		stderr   string
		wantCode int
	}{{
		name:   "no user_data and no static values",
		url:    func(t *testing.T, m *machine) string { return serveStatus(t, http.StatusNotFound) },
		stderr: "nothing to apply",
	}, {
		name:    "no user_data, static id without expiry",
		url:     func(t *testing.T, m *machine) string { return serveStatus(t, http.StatusNotFound) },
		env:     staticID,
		expires: "never",
	}, {
		name:    "empty user_data, static id and expiry",
		url:     func(t *testing.T, m *machine) string { return serveUserData(t, "", true) },
		env:     append([]string{"CLOUD_INSTANCE_STATIC_EXPIRES=2030-01-02T03:04:05Z"}, staticID...),
		expires: "2030-01-02T03:04:05Z",
	}, {
		name:    "metadata service unreachable",
		url:     func(t *testing.T, m *machine) string { return closedURL(t) },
		env:     staticID,
		expires: "never",
	}, {
		name: "a foreign user_data script, which is not run",
		url: func(t *testing.T, m *machine) string {
			return serveUserData(t, "#!/bin/sh\ntouch "+m.marker+"\n", true)
		},
		env:     staticID,
		expires: "never",
		stderr:  "not for this machine",
	}, {
		name:     "an instance user that is not a user name",
		url:      func(t *testing.T, m *machine) string { return serveStatus(t, http.StatusNotFound) },
		env:      []string{"CLOUD_INSTANCE_USER=../root"},
		stderr:   "not a valid user name",
		wantCode: 1,
	}, {
		name:     "a pause between tries over the bound",
		url:      func(t *testing.T, m *machine) string { return serveStatus(t, http.StatusNotFound) },
		env:      []string{"CLOUD_INSTANCE_FETCH_PAUSE=11"},
		stderr:   "CLOUD_INSTANCE_FETCH_PAUSE is not a number from 0 to 10",
		wantCode: 1,
	}, {
		name:     "a static id that is not an id",
		url:      func(t *testing.T, m *machine) string { return serveStatus(t, http.StatusNotFound) },
		env:      []string{"CLOUD_INSTANCE_STATIC_ID=$(touch x)"},
		stderr:   "not a valid instance id",
		wantCode: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			before := snapshot(t, m.root)
			res := m.run(t, dash, tt.url(t, m), tt.env...)
			if res.code != tt.wantCode {
				t.Fatalf("exit status %d, want %d", res.code, tt.wantCode)
			}
			want := before
			if tt.expires != "" {
				want = withInstance(maps(before), "claude", "static-1", tt.expires)
			}
			compareTrees(t, snapshot(t, m.root), want)
			if !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("stderr does not say %q", tt.stderr)
			}
		})
	}
}

func maps(m map[string]entry) map[string]entry {
	out := make(map[string]entry, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestScriptKeepsGatewayExpiry follows one machine through an extend and
// reboots: the gateway's update of the expiry survives a reboot with the
// same user_data, and a document with a new expiry still applies.
func TestScriptKeepsGatewayExpiry(t *testing.T) {
	t.Parallel()
	m := newMachine(t)
	person, gw := testkit.NewKey(t).Public(), testkit.NewKey(t).Public()
	hostKey := testkit.NewKey(t).PEM
	doc := func(expires time.Time) Document {
		d, err := New("e1", "cc-e1", "claude", expires, 22, []ssh.PublicKey{person, gw}, hostKey)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := doc(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	firstData, err := first.Render()
	if err != nil {
		t.Fatal(err)
	}
	url := serveUserData(t, firstData, true)
	if res := m.run(t, dash, url); res.code != 0 {
		t.Fatalf("first boot: exit status %d", res.code)
	}
	expiresFile := filepath.Join(m.root, "etc/cloud-instance/expires")
	assertFile(t, expiresFile, "2031-01-01T00:00:00Z\n")

	// The gateway, logged in as the instance user, after `extend`.
	extended := time.Date(2031, 1, 1, 5, 30, 0, 0, time.UTC)
	runAsInstanceUser(t, m, ExpiresCommand(extended))
	assertFile(t, expiresFile, "2031-01-01T05:30:00Z\n")

	res := m.run(t, dash, url)
	if res.code != 0 {
		t.Fatalf("reboot: exit status %d", res.code)
	}
	assertFile(t, expiresFile, "2031-01-01T05:30:00Z\n")
	if !strings.Contains(res.stderr, "keeping") {
		t.Error("stderr does not say the gateway's expiry is kept")
	}

	next := doc(time.Date(2031, 2, 1, 0, 0, 0, 0, time.UTC))
	nextData, err := next.Render()
	if err != nil {
		t.Fatal(err)
	}
	if res := m.run(t, dash, serveUserData(t, nextData, true)); res.code != 0 {
		t.Fatalf("new document: exit status %d", res.code)
	}
	assertFile(t, expiresFile, "2031-02-01T00:00:00Z\n")
}

// runAsInstanceUser runs an exec command line the way sshd would for the
// instance user: through sh -c, with CLOUD_INSTANCE_DIR naming the test
// root's folder. As root it runs with the instance user's ids, so the
// folder's ownership is what lets it replace the root-owned file.
func runAsInstanceUser(t *testing.T, m *machine, command string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CLOUD_INSTANCE_DIR=" + filepath.Join(m.root, "etc/cloud-instance")}
	if owners() {
		// The instance user must reach the folder through the test's
		// private temporary folders.
		for d := m.root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: instanceUID, Gid: instanceGID}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

// flakyCurl puts a curl on PATH that fails the first failures calls the way
// curl does with status code and message, and runs the real curl after;
// it returns the env for the script and a function that reports how many
// times curl ran.
func flakyCurl(t *testing.T, failures, code int, message string) (env []string, calls func() int) {
	t.Helper()
	real, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	count := filepath.Join(dir, "calls")
	writeFile(t, count, "0\n", 0o644)
	script := fmt.Sprintf(`#!/bin/sh
n=$(($(cat '%[1]s') + 1))
echo "$n" >'%[1]s'
if [ "$n" -le %[2]d ]; then
	echo 'curl: (%[3]d) %[4]s' >&2
	exit %[3]d
fi
exec '%[5]s' "$@"
`, count, failures, code, message, real)
	writeFile(t, filepath.Join(dir, "curl"), script, 0o755)
	return []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")},
		func() int {
			b, err := os.ReadFile(count)
			if err != nil {
				t.Fatal(err)
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
}

// serveAfter answers the first failures requests with the HTTP status code,
// and the later ones with body as the user_data; it returns the URL and a
// function that reports how many requests came.
func serveAfter(t *testing.T, failures, code int, body string) (url string, requests func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		fail := n <= failures
		mu.Unlock()
		if fail {
			w.WriteHeader(code)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hetzner/v1/userdata", func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestScriptWaitsForTheMetadataService boots with a network that is not up
// yet, or a metadata service that is not ready: the script tries again,
// within its bound of tries, and falls back, warning, only after the last.
func TestScriptWaitsForTheMetadataService(t *testing.T) {
	t.Parallel()
	const unreachable = "Failed to connect to 169.254.169.254 port 80 after 0 ms: Network is unreachable"
	const timedOut = "Connection timed out after 4001 milliseconds"
	const giveUp = "<4>cloud-instance-bootstrap: warning: the metadata service at "
	doc := newDoc(t, "w1", "cc-w1", "claude", time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC), 22,
		testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
	userData, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	staticID := "CLOUD_INSTANCE_STATIC_ID=static-1"
	tests := []struct {
		name string
		// setup returns the URL, the env and how many tries reached curl or
		// the service.
		setup    func(t *testing.T) (url string, env []string, tries func() int)
		attempts int
		applied  bool   // the document applies; otherwise the static identity
		tries    int    // how many tries the script makes
		stderr   string // a line the script must log
		quiet    bool   // no warning that the service never answered
	}{{
		name: "network unreachable three times",
		setup: func(t *testing.T) (string, []string, func() int) {
			env, calls := flakyCurl(t, 3, 7, unreachable)
			return serveUserData(t, userData, true), env, calls
		},
		attempts: 5, applied: true, tries: 4,
		stderr: "try 3 of 5: no answer from", quiet: true,
	}, {
		name: "timeouts",
		setup: func(t *testing.T) (string, []string, func() int) {
			env, calls := flakyCurl(t, 2, 28, timedOut)
			return serveUserData(t, userData, true), env, calls
		},
		attempts: 3, applied: true, tries: 3,
		stderr: "curl exit status 28", quiet: true,
	}, {
		name: "service unavailable, then the document",
		setup: func(t *testing.T) (string, []string, func() int) {
			url, requests := serveAfter(t, 2, http.StatusServiceUnavailable, userData)
			return url, nil, requests
		},
		attempts: 3, applied: true, tries: 3,
		stderr: "HTTP status 503", quiet: true,
	}, {
		name: "too many requests, then the document",
		setup: func(t *testing.T) (string, []string, func() int) {
			url, requests := serveAfter(t, 1, http.StatusTooManyRequests, userData)
			return url, nil, requests
		},
		attempts: 2, applied: true, tries: 2,
		stderr: "HTTP status 429", quiet: true,
	}, {
		name: "network never comes up",
		setup: func(t *testing.T) (string, []string, func() int) {
			env, calls := flakyCurl(t, math.MaxInt32, 7, unreachable)
			return serveUserData(t, userData, true), env, calls
		},
		attempts: 3, tries: 3,
		stderr: giveUp,
	}, {
		name: "service always failing",
		setup: func(t *testing.T) (string, []string, func() int) {
			url, requests := serveAfter(t, math.MaxInt, http.StatusInternalServerError, userData)
			return url, nil, requests
		},
		attempts: 4, tries: 4,
		stderr: giveUp,
	}, {
		name: "no user_data is an answer",
		setup: func(t *testing.T) (string, []string, func() int) {
			url, requests := serveAfter(t, math.MaxInt, http.StatusNotFound, userData)
			return url, nil, requests
		},
		attempts: 5, tries: 1,
		stderr: "no user_data from", quiet: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t)
			before := snapshot(t, m.root)
			url, env, tries := tt.setup(t)
			env = append(env, staticID, fmt.Sprintf("CLOUD_INSTANCE_FETCH_ATTEMPTS=%d", tt.attempts))
			res := m.run(t, dash, url, env...)
			if res.code != 0 {
				t.Fatalf("exit status %d, want 0", res.code)
			}
			want := withInstance(maps(before), "claude", "static-1", "never")
			if tt.applied {
				want = applied(before, doc, doc.ExpiresAt)
			}
			compareTrees(t, snapshot(t, m.root), want)
			if got := tries(); got != tt.tries {
				t.Errorf("%d tries, want %d", got, tt.tries)
			}
			if !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("stderr does not say %q", tt.stderr)
			}
			if tt.quiet && strings.Contains(res.stderr, giveUp) {
				t.Error("stderr warns that the service never answered")
			}
		})
	}
}
