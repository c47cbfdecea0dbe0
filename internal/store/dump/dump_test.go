package dump

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// A document read back is the one written; one of another version, with
// a field this binary does not know, or with a record lacking its key is
// refused with a reason.
func TestReadWrite(t *testing.T) {
	d := Document{Leases: []lease.Lease{{Fingerprint: "SHA256:a", ID: "x"}}, Events: []lease.Event{{Kind: "create"}}}
	var buf bytes.Buffer
	if err := Write(&buf, d); err != nil {
		t.Fatal(err)
	}
	got, err := Read(&buf)
	if err != nil || got.Version != Version || got.Summary() != "1 leases, 0 people, 0 pool machines, 1 events and 0 refusal counts" {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	if got.Empty() || !(Document{}).Empty() {
		t.Error("Empty is wrong")
	}
	for doc, want := range map[string]string{
		`{"version": 2}`: "version 2: unknown document version",
		`{"version": 1, "leases": [{"id": "x"}]}`:        "a lease has no fingerprint",
		`{"version": 1, "people": [{}]}`:                 "a person has no fingerprint",
		`{"version": 1, "pool": [{"state": "ready"}]}`:   "a pool machine has no id",
		`{"version": 1, "volumes": []}`:                  `unknown field "volumes"`,
		`{"version": 1, "leases": [{"fingerprint": 3}]}`: "cannot unmarshal number",
	} {
		_, err := Read(strings.NewReader(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Read(%s): %v, want %q", doc, err, want)
		}
	}
	if _, err := Read(strings.NewReader(`{"version": 0}`)); !errors.Is(err, ErrVersion) {
		t.Errorf("a document without a version: %v, want ErrVersion", err)
	}
}
