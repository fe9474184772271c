// Package metrics defines the server's Prometheus metrics, per mailbox.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's collectors.
type Metrics struct {
	Registry    *prometheus.Registry
	Delivered   *prometheus.CounterVec
	Acked       *prometheus.CounterVec
	Pending     *prometheus.GaugeVec
	Reconnects  *prometheus.CounterVec
	LastSuccess *prometheus.GaugeVec
	Quarantined *prometheus.CounterVec
	AuthFailed  *prometheus.CounterVec
}

// New registers the collectors (and the Go and process collectors) on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_messages_delivered_total",
			Help: "Messages delivered to consumers (each delivery attempt)."}, []string{"mailbox"}),
		Acked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_messages_acked_total",
			Help: "Messages acknowledged by consumers."}, []string{"mailbox"}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailintake_messages_pending",
			Help: "Messages delivered and not yet acknowledged."}, []string{"mailbox"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_reconnects_total",
			Help: "Connection attempts after the first."}, []string{"mailbox"}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailintake_last_success_timestamp_seconds",
			Help: "When the mailbox last synchronised successfully (Unix time)."}, []string{"mailbox"}),
		Quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_messages_quarantined_total",
			Help: "Messages put in quarantine."}, []string{"mailbox"}),
		AuthFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_auth_failures_total",
			Help: "Refused logins and provider failures."}, []string{"mailbox"}),
	}
	r.MustRegister(m.Delivered, m.Acked, m.Pending, m.Reconnects, m.LastSuccess, m.Quarantined, m.AuthFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Forget removes a deleted mailbox's series.
func (m *Metrics) Forget(mailboxID string) {
	for _, v := range []interface {
		DeleteLabelValues(...string) bool
	}{m.Delivered, m.Acked, m.Pending, m.Reconnects, m.LastSuccess, m.Quarantined, m.AuthFailed} {
		v.DeleteLabelValues(mailboxID)
	}
}
