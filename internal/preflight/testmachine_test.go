package preflight

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

func TestTestMachineRows(t *testing.T) {
	checks := TestMachine([]lease.Phase{
		{Name: lease.PhaseCreate, Took: 12340 * time.Millisecond, Result: "server 7 cc-preflight-ab at 192.0.2.7"},
		{Name: lease.PhaseBoot, Took: 61 * time.Second, Err: &lease.TestMachineError{Phase: lease.PhaseBoot, Fix: "check the image", Err: errors.New("refused")}},
		{Name: lease.PhaseDelete, Took: 1500 * time.Millisecond, Err: errors.New("no gateway key")},
	})
	var b strings.Builder
	if err := Write(&b, checks); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^test machine create +ok: 12s, server 7 cc-preflight-ab at 192\.0\.2\.7 +-$`,
		`(?m)^test machine boot +PROBLEM +after 1m1s: check the image$`,
		`(?m)^test machine delete +PROBLEM +after 1\.5s: no gateway key$`,
	} {
		if !regexp.MustCompile(want).MatchString(b.String()) {
			t.Errorf("table lacks %s:\n%s", want, b.String())
		}
	}
	if Problems(checks) == nil {
		t.Error("failed phases are no problem")
	}
}
