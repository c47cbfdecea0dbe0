package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cc-gateway/cc-gateway/internal/notify"
)

func TestNotifyObserver(t *testing.T) {
	n := New().Notify()
	for _, r := range []notify.Result{notify.Delivered, notify.Delivered, notify.Failed} {
		n.Notified(r)
	}
	for result, want := range map[notify.Result]float64{notify.Delivered: 2, notify.Failed: 1, notify.Dropped: 0} {
		if got := testutil.ToFloat64(n.results[result]); got != want {
			t.Errorf("notifications{result=%q} = %v, want %v", result, got, want)
		}
	}
}
