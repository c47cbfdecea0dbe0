package bolt

import (
	"path/filepath"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/store/storetest"
)

// The store contract (storetest), on real files, with small bounds so the
// suite reaches them.
func TestContract(t *testing.T) {
	const events, refusals = 5, 4
	open := func(t *testing.T, path string) storetest.Store {
		t.Helper()
		s, err := Open(path)
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		s.eventLimit, s.refusalLimit = events, refusals
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) storetest.Store {
			return open(t, filepath.Join(t.TempDir(), "data", "gateway.db"))
		},
		Reopen: func(t *testing.T, s storetest.Store) storetest.Store {
			t.Helper()
			path := s.(*Store).path
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return open(t, path)
		},
		EventLimit: events, RefusalLimit: refusals,
	})
}
