package telemetry

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Metric names and labels of the proxy that the figures are computed from (see proxy/metrics).
const (
	metricRequests   = "request_total"
	metricResponses  = "response_total"
	metricLatency    = "response_latency_ms"
	metricTCPOpen    = "tcp_open_total"
	metricTCPClose   = "tcp_close_total"
	metricCertExpiry = "identity_cert_expiration_timestamp_seconds"

	// bucketSuffix names a histogram's buckets, as in the text format; the le label bounds each.
	bucketSuffix = "_bucket"
)

// Proxy is a scraped proxy: the pod it runs in and the workload the pod belongs to.
type Proxy struct {
	Namespace, Pod string
	// Workload is "kind/name" of the pod's controller (a Deployment rather than its ReplicaSet),
	// or "pod/<name>" for a pod that has none.
	Workload string
}

func (p Proxy) key() string { return p.Namespace + "/" + p.Pod }

// series is one labelled counter of one proxy, with its samples.
type series struct {
	name   string
	labels map[string]string
	points []point
}

type proxyState struct {
	meta   Proxy
	series map[string]*series
	// up is false once a scrape failed or the pod went: its samples still count in the windows
	// they fall in, as in Prometheus, but it has no open connections.
	up bool
	// certExpiry is when the proxy's workload certificate expires, as last scraped; zero if unknown.
	certExpiry time.Time
}

// Store keeps each proxy's samples for as long as a window may need them.
type Store struct {
	mu      sync.Mutex
	proxies map[string]*proxyState
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{proxies: map[string]*proxyState{}} }

// Add records one scrape of a proxy, taken at at.
func (s *Store) Add(p Proxy, at time.Time, families map[string]*dto.MetricFamily) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.proxies[p.key()]
	if st == nil {
		st = &proxyState{series: map[string]*series{}}
		s.proxies[p.key()] = st
	}
	st.meta, st.up = p, true
	st.certExpiry = time.Time{}
	if ms := families[metricCertExpiry].GetMetric(); len(ms) == 1 && ms[0].GetGauge().GetValue() > 0 {
		st.certExpiry = time.Unix(int64(ms[0].GetGauge().GetValue()), 0)
	}
	add := func(name string, labels []*dto.LabelPair, extra map[string]string, v float64) {
		ls := make(map[string]string, len(labels)+len(extra))
		for _, l := range labels {
			ls[l.GetName()] = l.GetValue()
		}
		for k, val := range extra {
			ls[k] = val
		}
		id := seriesID(name, ls)
		sr := st.series[id]
		if sr == nil {
			sr = &series{name: name, labels: ls}
			st.series[id] = sr
		}
		sr.points = append(sr.points, point{at: at, v: v})
	}
	for _, name := range []string{metricRequests, metricResponses, metricTCPOpen, metricTCPClose} {
		for _, m := range families[name].GetMetric() {
			v := m.GetCounter().GetValue()
			if m.GetCounter() == nil {
				v = m.GetUntyped().GetValue()
			}
			add(name, m.GetLabel(), nil, v)
		}
	}
	for _, m := range families[metricLatency].GetMetric() {
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			add(metricLatency+bucketSuffix, m.GetLabel(), map[string]string{"le": formatLE(b.GetUpperBound())}, float64(b.GetCumulativeCount()))
		}
		add(metricLatency+bucketSuffix, m.GetLabel(), map[string]string{"le": "+Inf"}, float64(h.GetSampleCount()))
	}
}

// Down marks a proxy that could not be scraped, or whose pod went.
func (s *Store) Down(namespace, pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.proxies[namespace+"/"+pod]; st != nil {
		st.up = false
	}
}

// Prune forgets samples older than before, and proxies that are down and left with none. A proxy
// that is up stays, even without traffic: it is connected.
func (s *Store) Prune(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, st := range s.proxies {
		for id, sr := range st.series {
			i := sort.Search(len(sr.points), func(i int) bool { return !sr.points[i].at.Before(before) })
			sr.points = append(sr.points[:0], sr.points[i:]...)
			if len(sr.points) == 0 {
				delete(st.series, id)
			}
		}
		if len(st.series) == 0 && !st.up {
			delete(s.proxies, key)
		}
	}
}

func seriesID(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "\x00" + labels[k])
	}
	return b.String()
}

func formatLE(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'g', -1, 64)
}

// keys are the proxies known, as namespace/pod.
func (s *Store) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.proxies))
	for k := range s.proxies {
		out = append(out, k)
	}
	return out
}

// SoonestCertExpiry is the soonest expiry among the workload certificates of the proxies that are
// up in namespace ("" for all); ok is false when none is known.
func (s *Store) SoonestCertExpiry(namespace string) (soonest time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.proxies {
		if !st.up || st.certExpiry.IsZero() || namespace != "" && st.meta.Namespace != namespace {
			continue
		}
		if !ok || st.certExpiry.Before(soonest) {
			soonest, ok = st.certExpiry, true
		}
	}
	return soonest, ok
}
