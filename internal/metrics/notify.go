package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cc-gateway/cc-gateway/internal/notify"
)

// Notify implements notify.Observer: how deliveries to people's
// notification targets ended.
type Notify struct {
	results map[notify.Result]prometheus.Counter // read only after Notify()
}

var _ notify.Observer = (*Notify)(nil)

// Notify registers the notification metrics and returns their observer.
func (r *Registry) Notify() *Notify {
	n := &Notify{results: map[notify.Result]prometheus.Counter{}}
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "notifications_total",
		Help: "Deliveries to people's notification targets, by how they ended: delivered, failed (after the last try) or dropped (the queue was full).",
	}, []string{"result"})
	for _, result := range []notify.Result{notify.Delivered, notify.Failed, notify.Dropped} {
		n.results[result] = results.WithLabelValues(string(result))
	}
	r.register(results)
	return n
}

// Notified counts one delivery's end.
func (n *Notify) Notified(result notify.Result) { n.results[result].Inc() }
