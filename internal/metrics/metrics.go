// Package metrics defines the server's Prometheus metrics, per mailbox.
package metrics

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailintake/mailintake/internal/offheap"
)

// Metrics are the server's collectors.
type Metrics struct {
	Registry    *prometheus.Registry
	Delivered   *CounterVec
	Acked       *CounterVec
	Pending     *GaugeVec
	Reconnects  *CounterVec
	LastSuccess *GaugeVec
	Quarantined *CounterVec
	AuthFailed  *CounterVec

	mailboxes *mailboxMetrics
}

// The per-mailbox metric families, in the order of a mailboxSeries' values.
const (
	famDelivered = iota
	famAcked
	famPending
	famReconnects
	famLastSuccess
	famQuarantined
	famAuthFailed
	numFamilies
)

// New registers the collectors (and the Go and process collectors) on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	mm := &mailboxMetrics{series: map[string]*mailboxSeries{}}
	fam := func(i int, name, help string, t prometheus.ValueType) {
		mm.descs[i] = prometheus.NewDesc(name, help, []string{"mailbox"}, nil)
		mm.types[i] = t
	}
	fam(famDelivered, "mailintake_messages_delivered_total", "Messages delivered to consumers (each delivery attempt).", prometheus.CounterValue)
	fam(famAcked, "mailintake_messages_acked_total", "Messages acknowledged by consumers.", prometheus.CounterValue)
	fam(famPending, "mailintake_messages_pending", "Messages delivered and not yet acknowledged.", prometheus.GaugeValue)
	fam(famReconnects, "mailintake_reconnects_total", "Connection attempts after the first.", prometheus.CounterValue)
	fam(famLastSuccess, "mailintake_last_success_timestamp_seconds", "When the mailbox last synchronised successfully (Unix time).", prometheus.GaugeValue)
	fam(famQuarantined, "mailintake_messages_quarantined_total", "Messages put in quarantine.", prometheus.CounterValue)
	fam(famAuthFailed, "mailintake_auth_failures_total", "Refused logins and provider failures.", prometheus.CounterValue)
	m := &Metrics{
		Registry:    r,
		Delivered:   &CounterVec{mm, famDelivered},
		Acked:       &CounterVec{mm, famAcked},
		Pending:     &GaugeVec{mm, famPending},
		Reconnects:  &CounterVec{mm, famReconnects},
		LastSuccess: &GaugeVec{mm, famLastSuccess},
		Quarantined: &CounterVec{mm, famQuarantined},
		AuthFailed:  &CounterVec{mm, famAuthFailed},
		mailboxes:   mm,
	}
	r.MustRegister(mm, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailintake_offheap_buffers_lent",
			Help: "Large buffers (message bodies being parsed, messages being sent) lent outside the Go heap and not yet given back."},
			func() float64 { return float64(offheap.CurrentStats().Lent) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailintake_offheap_cached_bytes",
			Help: "Bytes of free off-heap buffers kept for reuse (at most 16 MiB, none after 10 s without use)."},
			func() float64 { return float64(offheap.CurrentStats().Cached) }))
	return m
}

// Forget removes a deleted mailbox's series.
func (m *Metrics) Forget(mailboxID string) {
	m.mailboxes.mu.Lock()
	defer m.mailboxes.mu.Unlock()
	delete(m.mailboxes.series, mailboxID)
}

// mailboxMetrics holds every mailbox's series of every per-mailbox family and collects them as
// constant metrics when scraped. client_golang's vectors keep, per series, a metric object with
// its label pairs, descriptor and creation timestamp in a hashed map (about 1.4 KB for the five
// series an idle mailbox has after traffic, times 10,000 mailboxes); here a mailbox costs one
// map entry and its values.
type mailboxMetrics struct {
	descs [numFamilies]*prometheus.Desc
	types [numFamilies]prometheus.ValueType

	mu     sync.RWMutex
	series map[string]*mailboxSeries
}

// mailboxSeries are one mailbox's values: a family's series exists (is exported) once its bit
// in set is, as a vector's series exists once it was first used. Its counters count from
// created on (their created timestamp).
type mailboxSeries struct {
	set     atomic.Uint32
	values  [numFamilies]atomic.Uint64 // float64 bits
	created time.Time
}

func (mm *mailboxMetrics) get(lvs []string) *mailboxSeries {
	if len(lvs) != 1 {
		panic("metrics: the per-mailbox metrics take one label value, the mailbox id")
	}
	id := lvs[0]
	mm.mu.RLock()
	s := mm.series[id]
	mm.mu.RUnlock()
	if s != nil {
		return s
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if s = mm.series[id]; s == nil {
		s = &mailboxSeries{created: time.Now()}
		mm.series[id] = s
	}
	return s
}

// Describe implements prometheus.Collector.
func (mm *mailboxMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range mm.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (mm *mailboxMetrics) Collect(ch chan<- prometheus.Metric) {
	type entry struct {
		id string
		s  *mailboxSeries
	}
	mm.mu.RLock()
	all := make([]entry, 0, len(mm.series))
	for id, s := range mm.series {
		all = append(all, entry{id, s})
	}
	mm.mu.RUnlock()
	for _, e := range all {
		set := e.s.set.Load()
		for f := range numFamilies {
			if set&(1<<f) == 0 {
				continue
			}
			v := math.Float64frombits(e.s.values[f].Load())
			if mm.types[f] == prometheus.CounterValue {
				ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(mm.descs[f], mm.types[f], v, e.s.created, e.id)
			} else {
				ch <- prometheus.MustNewConstMetric(mm.descs[f], mm.types[f], v, e.id)
			}
		}
	}
}

// CounterVec is a per-mailbox counter family.
type CounterVec struct {
	mm  *mailboxMetrics
	fam int
}

// WithLabelValues returns the counter of a mailbox (the one label value), creating it.
func (v *CounterVec) WithLabelValues(lvs ...string) Counter {
	s := v.mm.get(lvs)
	s.set.Or(1 << v.fam)
	return Counter{s, v.fam}
}

// GaugeVec is a per-mailbox gauge family.
type GaugeVec struct {
	mm  *mailboxMetrics
	fam int
}

// WithLabelValues returns the gauge of a mailbox (the one label value), creating it.
func (v *GaugeVec) WithLabelValues(lvs ...string) Gauge {
	s := v.mm.get(lvs)
	s.set.Or(1 << v.fam)
	return Gauge{s, v.fam}
}

// Counter is one mailbox's series of a counter family.
type Counter struct {
	s   *mailboxSeries
	fam int
}

// Inc adds one.
func (c Counter) Inc() { c.Add(1) }

// Add adds d, which must not be negative.
func (c Counter) Add(d float64) {
	if d < 0 {
		panic("metrics: counter cannot decrease in value")
	}
	addFloat(&c.s.values[c.fam], d)
}

// Gauge is one mailbox's series of a gauge family.
type Gauge struct {
	s   *mailboxSeries
	fam int
}

// Set sets the gauge.
func (g Gauge) Set(v float64) { g.s.values[g.fam].Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g Gauge) Add(d float64) { addFloat(&g.s.values[g.fam], d) }

// SetToCurrentTime sets the gauge to the current Unix time in seconds.
func (g Gauge) SetToCurrentTime() { g.Set(float64(time.Now().UnixNano()) / 1e9) }

func addFloat(v *atomic.Uint64, d float64) {
	for {
		old := v.Load()
		if v.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}
