package metrics

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// NewTemporalHandler returns a handler for the Temporal SDK's client and
// worker metrics (temporal_request, temporal_workflow_task_…, …) that
// registers them on reg as they first appear: counters as counters, gauges
// as gauges and timers as histograms in seconds. It does what the SDK's
// tally adapter with tally's Prometheus reporter does, on client_golang.
//
// A metric keeps the label names it first appeared with: a later use with
// other tags fills the missing labels with "" and drops the extra ones.
func NewTemporalHandler(reg prometheus.Registerer) client.MetricsHandler {
	return &temporalHandler{vecs: &temporalVecs{reg: reg, m: map[string]*temporalVec{}}}
}

// TemporalHandler is the SDK's metrics handler on the default registry.
var TemporalHandler = NewTemporalHandler(prometheus.DefaultRegisterer)

type temporalHandler struct {
	vecs *temporalVecs
	tags map[string]string
}

type temporalVecs struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	m   map[string]*temporalVec
}

// temporalVec is one metric with the label names it was registered with.
type temporalVec struct {
	labels    []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

type kind int

const (
	counterKind kind = iota
	gaugeKind
	timerKind
)

func (h *temporalHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return &temporalHandler{vecs: h.vecs, tags: merged}
}

func (h *temporalHandler) Counter(name string) client.MetricsCounter {
	v, values := h.vecs.get(name, counterKind, h.tags)
	if v == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c := v.counter.WithLabelValues(values...)
	return counterFunc(func(d int64) { c.Add(float64(d)) })
}

func (h *temporalHandler) Gauge(name string) client.MetricsGauge {
	v, values := h.vecs.get(name, gaugeKind, h.tags)
	if v == nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	g := v.gauge.WithLabelValues(values...)
	return gaugeFunc(g.Set)
}

func (h *temporalHandler) Timer(name string) client.MetricsTimer {
	v, values := h.vecs.get(name, timerKind, h.tags)
	if v == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o := v.histogram.WithLabelValues(values...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

// get returns the metric of that name, registering it on first use, and the
// label values for tags. It returns nil when the name cannot be registered
// (taken by a metric of another kind).
func (vs *temporalVecs) get(name string, k kind, tags map[string]string) (*temporalVec, []string) {
	name = strings.NewReplacer(".", "_", "-", "_").Replace(name)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v, ok := vs.m[name]
	if !ok {
		v = &temporalVec{labels: slices.Sorted(maps.Keys(tags))}
		help := "Temporal SDK metric " + name + "."
		var c prometheus.Collector
		switch k {
		case counterKind:
			v.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, v.labels)
			c = v.counter
		case gaugeKind:
			v.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, v.labels)
			c = v.gauge
		default:
			v.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: name, Help: help,
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
			}, v.labels)
			c = v.histogram
		}
		if err := vs.reg.Register(c); err != nil {
			v = &temporalVec{}
		}
		vs.m[name] = v
	}
	if (k == counterKind && v.counter == nil) || (k == gaugeKind && v.gauge == nil) ||
		(k == timerKind && v.histogram == nil) {
		return nil, nil
	}
	values := make([]string, len(v.labels))
	for i, l := range v.labels {
		values[i] = tags[l]
	}
	return v, values
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }
