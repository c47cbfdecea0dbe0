package bootstrap

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"golang.org/x/crypto/ssh"
)

// FuzzParse: a machine reads its bootstrap document from user_data, which
// anyone with the cloud project's token can write. Parse accepts exactly one
// valid JSON document, and what it accepts renders back to a document that
// parses to the same; what it refuses, it refuses with an error that says
// which part is wrong. Docs/operations.md says how to fuzz longer.
func FuzzParse(f *testing.F) {
	d, err := New("cc-0123456789", "cc-0123456789", "claude", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		22, []ssh.PublicKey{testkit.NewKey(f).Public()}, testkit.NewKey(f).PEM)
	if err != nil {
		f.Fatal(err)
	}
	doc, err := d.Render()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		doc, doc + "\n", doc + " {}", doc + "garbage",
		strings.Replace(doc, `"version":1`, `"version":2`, 1),
		strings.Replace(doc, `"user":"claude"`, `"user":"root; rm -rf /"`, 1),
		strings.Replace(doc, `"expires_at":"2026-01-02T03:04:05Z"`, `"expires_at":"never"`, 1),
		strings.Replace(doc, `"ssh_port":22`, `"ssh_port":70000`, 1),
		strings.Replace(doc, `"version":1`, `"version":1,"extra":true`, 1),
		strings.Replace(doc, `"version":1`, `"version":1,"home_device":"/dev/disk/by-id/scsi-0HC_Volume_42"`, 1),
		strings.Replace(doc, `"version":1`, `"version":1,"home_device":"/dev/sda"`, 1),
		strings.Replace(doc, `"version":1`, `"version":1,"pool":true,"home_device":"/dev/disk/by-id/scsi-0HC_Volume_42"`, 1),
		"", "null", "{}", "[]", `{"version":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "decode bootstrap document: ") && !strings.HasPrefix(msg, "invalid bootstrap document: ") &&
				!strings.HasPrefix(msg, "bootstrap document is ") {
				t.Fatalf("refusal %q does not say what is wrong", msg)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted a document that is not one JSON value: %q", data)
		}
		out, err := d.Render()
		if err != nil {
			t.Fatalf("accepted a document that does not render: %v", err)
		}
		again, err := Parse([]byte(out))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("rendered %q parses as %+v, %v; want %+v", out, again, err, d)
		}
	})
}
