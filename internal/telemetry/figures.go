package telemetry

import (
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/ptr"
)

// Golden are the golden metrics of one scope over the window. A nil figure was not observed.
type Golden struct {
	// Responses is how many responses the window saw (extrapolated as increase() does).
	Responses float64
	// RPS is responses per second over the window.
	RPS float64
	// SuccessRate is the share of responses that were not failures, 0 to 1.
	SuccessRate *float64
	// P50, P95 and P99 are latency quantiles in milliseconds.
	P50, P95, P99 *float64
	// MTLS is the share of requests carried over mTLS, 0 to 1.
	MTLS *float64
	// TCPConnections is how many connections the proxies that are up hold open.
	TCPConnections int64
}

// ServiceKey names a Service.
type ServiceKey struct{ Namespace, Name string }

// WorkloadKey names a workload: Name is "kind/name".
type WorkloadKey struct{ Namespace, Name string }

// Scopes hold one T for each scope figures are computed for.
type Scopes[T any] struct {
	// Mesh covers every request served by a meshed pod (seen by the server's proxy).
	Mesh T
	// Namespaces cover the requests served by each namespace's pods.
	Namespaces map[string]T
	// Workloads cover the requests each workload's pods served.
	Workloads map[WorkloadKey]T
	// Services cover the requests meshed clients sent to each Service (seen by the clients'
	// proxies), Routes and Backends the same by route and by the backend that took them.
	Services map[ServiceKey]T
	Routes   map[ServiceKey]map[string]T
	Backends map[ServiceKey]map[ServiceKey]T
}

func newScopes[T any](mesh T) Scopes[T] {
	return Scopes[T]{Mesh: mesh, Namespaces: map[string]T{}, Workloads: map[WorkloadKey]T{}, Services: map[ServiceKey]T{},
		Routes: map[ServiceKey]map[string]T{}, Backends: map[ServiceKey]map[ServiceKey]T{}}
}

// Figures are the golden metrics at one time.
type Figures struct {
	At     time.Time
	Window time.Duration
	Scopes[*Golden]
	// Proxies counts the proxies scraped successfully, by namespace ("" for all).
	Proxies map[string]int
}

// accumulator sums the rated series of one scope.
type accumulator struct {
	responses, failures float64
	requests, tls       float64
	buckets             map[float64]float64
	tcp                 int64
}

func (a *accumulator) finish(window time.Duration) *Golden {
	g := &Golden{Responses: a.responses, RPS: a.responses / window.Seconds(), TCPConnections: a.tcp}
	if a.responses > 0 {
		g.SuccessRate = ptr.To(1 - a.failures/a.responses)
	}
	if a.requests > 0 {
		g.MTLS = ptr.To(a.tls / a.requests)
	}
	var bs []bucket
	for le, c := range a.buckets {
		bs = append(bs, bucket{le: le, count: c})
	}
	for q, dst := range map[float64]**float64{0.5: &g.P50, 0.95: &g.P95, 0.99: &g.P99} {
		if v, ok := quantile(q, bs); ok {
			*dst = ptr.To(v)
		}
	}
	return g
}

// scopes are the accumulators of every scope a series counts in.
type scopes struct{ Scopes[*accumulator] }

func get[K comparable](m map[K]*accumulator, k K) *accumulator {
	a := m[k]
	if a == nil {
		a = &accumulator{}
		m[k] = a
	}
	return a
}

func get2[K1, K2 comparable](m map[K1]map[K2]*accumulator, k1 K1, k2 K2) *accumulator {
	inner := m[k1]
	if inner == nil {
		inner = map[K2]*accumulator{}
		m[k1] = inner
	}
	return get(inner, k2)
}

// Compute works out the figures over the window that ends at now.
func (s *Store) Compute(now time.Time, window time.Duration) *Figures {
	sc := scopes{newScopes(&accumulator{})}
	proxies := map[string]int{}
	s.mu.Lock()
	for _, st := range s.proxies {
		if st.up {
			proxies[""]++
			proxies[st.meta.Namespace]++
		}
		for _, sr := range st.series {
			targets := sc.targets(st.meta, sr.labels)
			if len(targets) == 0 {
				continue
			}
			if sr.name == metricTCPOpen || sr.name == metricTCPClose {
				if !st.up {
					continue
				}
				n := int64(sr.points[len(sr.points)-1].v)
				if sr.name == metricTCPClose {
					n = -n
				}
				for _, a := range targets {
					a.tcp += n
				}
				continue
			}
			inc, ok := increase(sr.points, now, window)
			if !ok {
				continue
			}
			for _, a := range targets {
				a.count(sr, inc)
			}
		}
	}
	s.mu.Unlock()
	return sc.finish(now, window, proxies)
}

// targets are the scopes a proxy's series counts in: requests served (inbound) count for the
// pod's workload, namespace and the mesh; requests sent (outbound) for the Service addressed, its
// route and the backend that took them.
func (sc *scopes) targets(p Proxy, labels map[string]string) []*accumulator {
	switch labels["direction"] {
	case "inbound":
		return []*accumulator{sc.Mesh, get(sc.Namespaces, p.Namespace), get(sc.Workloads, WorkloadKey{p.Namespace, p.Workload})}
	case "outbound":
		svc, ok := parseService(labels["dst_service"])
		if !ok {
			return nil
		}
		out := []*accumulator{get(sc.Services, svc)}
		if route := labels["route"]; route != "" {
			out = append(out, get2(sc.Routes, svc, route))
		}
		if backend, ok := parseService(labels["dst_backend"]); ok {
			out = append(out, get2(sc.Backends, svc, backend))
		}
		return out
	}
	return nil
}

// count adds a series' increase over the window to the scope.
func (a *accumulator) count(sr *series, inc float64) {
	switch sr.name {
	case metricResponses:
		a.responses += inc
		if sr.labels["classification"] == "failure" {
			a.failures += inc
		}
	case metricRequests:
		a.requests += inc
		if sr.labels["tls"] == "true" {
			a.tls += inc
		}
	case metricLatency + bucketSuffix:
		le, err := strconv.ParseFloat(sr.labels["le"], 64)
		if err != nil {
			return
		}
		if a.buckets == nil {
			a.buckets = map[float64]float64{}
		}
		a.buckets[le] += inc
	}
}

func (sc *scopes) finish(now time.Time, window time.Duration, proxies map[string]int) *Figures {
	f := &Figures{At: now, Window: window, Scopes: newScopes(sc.Mesh.finish(window)), Proxies: proxies}
	finishAll(f.Namespaces, sc.Namespaces, window)
	finishAll(f.Workloads, sc.Workloads, window)
	finishAll(f.Services, sc.Services, window)
	for k, inner := range sc.Routes {
		f.Routes[k] = map[string]*Golden{}
		finishAll(f.Routes[k], inner, window)
	}
	for k, inner := range sc.Backends {
		f.Backends[k] = map[ServiceKey]*Golden{}
		finishAll(f.Backends[k], inner, window)
	}
	return f
}

func finishAll[K comparable](dst map[K]*Golden, src map[K]*accumulator, window time.Duration) {
	for k, a := range src {
		dst[k] = a.finish(window)
	}
}

// parseService reads a dst_service label, "name.namespace".
func parseService(s string) (ServiceKey, bool) {
	name, ns, ok := strings.Cut(s, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return ServiceKey{}, false
	}
	return ServiceKey{Namespace: ns, Name: name}, true
}
