package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cluster are the metrics of a replica sharing the database with others: the leases it holds and
// the mailboxes it took over, handed over or lost. It implements cluster.Metrics.
type Cluster struct {
	leases    prometheus.Gauge
	handovers *prometheus.CounterVec
	lag       prometheus.Histogram
}

// NewCluster registers the cluster metrics on m's registry.
func (m *Metrics) NewCluster() *Cluster {
	c := &Cluster{
		leases: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailintake_cluster_leases_held",
			Help: "Mailboxes whose lease this replica holds (their sessions run here)."}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailintake_cluster_handovers_total",
			Help: "Mailbox leases claimed (taken over), released (handed to another replica) or lost (the lease lapsed or was taken) by this replica."},
			[]string{"kind"}),
	}
	c.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailintake_relay_lag_seconds",
		Help:    "Time from the owning replica sending a message over a relay to this replica receiving it for its consumer (includes the replicas' clock offset).",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}})
	m.Registry.MustRegister(c.leases, c.handovers, c.lag)
	return c
}

// LeasesHeld sets the leases held.
func (c *Cluster) LeasesHeld(n int) { c.leases.Set(float64(n)) }

// Handover counts n leases claimed, released or lost.
func (c *Cluster) Handover(kind string, n int) { c.handovers.WithLabelValues(kind).Add(float64(n)) }

// RelayLag records one relayed message's lag.
func (c *Cluster) RelayLag(d time.Duration) { c.lag.Observe(d.Seconds()) }
