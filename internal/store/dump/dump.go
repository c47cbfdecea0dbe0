// Package dump is the document `gateway store export` writes and `gateway
// store import` reads: everything a lease store keeps (leases, people, the
// warm pool, the audit log and the refusal counts) as one versioned JSON
// document, so a gateway's state moves between bbolt and etcd as it is.
package dump

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Version is the layout of the document this binary writes and reads.
const Version = 1

// Document is a store's whole content. Records are as the stores keep
// them; the logs are oldest first.
type Document struct {
	Version  int                 `json:"version"`
	Leases   []lease.Lease       `json:"leases"`   // by fingerprint
	People   []lease.Person      `json:"people"`   // by fingerprint
	Pool     []lease.PoolMachine `json:"pool"`     // by id
	Events   []lease.Event       `json:"events"`   // the audit log
	Refusals []lease.Refusal     `json:"refusals"` // counts of refused connections
}

// ErrVersion means a document of a layout this binary does not know.
var ErrVersion = errors.New("unknown document version")

// Empty reports whether d holds nothing.
func (d Document) Empty() bool {
	return len(d.Leases)+len(d.People)+len(d.Pool)+len(d.Events)+len(d.Refusals) == 0
}

// Summary counts what d holds, for the operator.
func (d Document) Summary() string {
	return fmt.Sprintf("%d leases, %d people, %d pool machines, %d events and %d refusal counts",
		len(d.Leases), len(d.People), len(d.Pool), len(d.Events), len(d.Refusals))
}

// Write writes d as indented JSON, with this binary's version.
func Write(w io.Writer, d Document) error {
	d.Version = Version
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("write store document: %w", err)
	}
	return nil
}

// Read reads a document, refusing one of another version and one whose
// records lack their keys (the stores could not file them).
func Read(r io.Reader) (Document, error) {
	var d Document
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("read store document: %w", err)
	}
	if d.Version != Version {
		return Document{}, fmt.Errorf("read store document: version %d: %w (this gateway reads version %d); export it again with this gateway's version", d.Version, ErrVersion, Version)
	}
	for _, l := range d.Leases {
		if l.Fingerprint == "" {
			return Document{}, errors.New("read store document: a lease has no fingerprint")
		}
	}
	for _, p := range d.People {
		if p.Fingerprint == "" {
			return Document{}, errors.New("read store document: a person has no fingerprint")
		}
	}
	for _, p := range d.Pool {
		if p.ID == "" {
			return Document{}, errors.New("read store document: a pool machine has no id")
		}
	}
	return d, nil
}
