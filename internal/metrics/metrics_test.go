package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// gather returns the per-mailbox values by family name and mailbox, and each family's type.
func gather(t *testing.T, m *Metrics) (map[string]map[string]float64, map[string]dto.MetricType) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals, types := map[string]map[string]float64{}, map[string]dto.MetricType{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			if len(mt.GetLabel()) != 1 || mt.GetLabel()[0].GetName() != "mailbox" {
				continue
			}
			if vals[f.GetName()] == nil {
				vals[f.GetName()] = map[string]float64{}
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			vals[f.GetName()][mt.GetLabel()[0].GetValue()] = v
			types[f.GetName()] = f.GetType()
		}
	}
	return vals, types
}

// The per-mailbox series are exported once used, with their values and types, and go with
// Forget.
func TestMailboxSeries(t *testing.T) {
	m := New()
	m.Delivered.WithLabelValues("a").Add(3)
	m.Delivered.WithLabelValues("a").Inc()
	m.Acked.WithLabelValues("a").Add(2)
	m.Pending.WithLabelValues("a").Set(2)
	m.Pending.WithLabelValues("a").Set(1)
	m.LastSuccess.WithLabelValues("b").SetToCurrentTime()
	m.Quarantined.WithLabelValues("b").Inc()
	vals, types := gather(t, m)
	want := map[string]map[string]float64{
		"mailintake_messages_delivered_total":   {"a": 4},
		"mailintake_messages_acked_total":       {"a": 2},
		"mailintake_messages_pending":           {"a": 1},
		"mailintake_messages_quarantined_total": {"b": 1},
	}
	for name, byMailbox := range want {
		for mb, v := range byMailbox {
			if got, ok := vals[name][mb]; !ok || got != v {
				t.Errorf("%s{mailbox=%q} = %v (present %v), want %v", name, mb, got, ok, v)
			}
		}
		if len(vals[name]) != len(byMailbox) {
			t.Errorf("%s has series %v, want only %v", name, vals[name], byMailbox)
		}
	}
	if ts := vals["mailintake_last_success_timestamp_seconds"]["b"]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last success %v is not now", ts)
	}
	for _, unused := range []string{"mailintake_reconnects_total", "mailintake_auth_failures_total"} {
		if _, ok := vals[unused]; ok {
			t.Errorf("%s exported before it was used", unused)
		}
	}
	if types["mailintake_messages_delivered_total"] != dto.MetricType_COUNTER || types["mailintake_messages_pending"] != dto.MetricType_GAUGE {
		t.Errorf("types: %v", types)
	}
	fams, _ := m.Registry.Gather()
	for _, f := range fams {
		if f.GetName() == "mailintake_messages_delivered_total" {
			if ct := f.GetMetric()[0].GetCounter().GetCreatedTimestamp(); ct == nil || time.Since(ct.AsTime()) > time.Minute {
				t.Errorf("counter created timestamp %v", ct)
			}
		}
	}
	m.Forget("a")
	vals, _ = gather(t, m)
	for name, byMailbox := range vals {
		if _, ok := byMailbox["a"]; ok {
			t.Errorf("%s still has the forgotten mailbox", name)
		}
	}
	if vals["mailintake_messages_quarantined_total"]["b"] != 1 {
		t.Error("Forget removed another mailbox's series")
	}
}

// A counter cannot go down, as with client_golang's counters.
func TestCounterRefusesNegative(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a negative Add did not panic")
		}
	}()
	New().Acked.WithLabelValues("a").Add(-1)
}
