package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/stat"
)

// Cluster tells a Source what Prometheus does not know: the Services and how many of their
// endpoints are meshed, which pods make up each workload, and the TrafficSplits with the weights in
// force.
type Cluster interface {
	// Services in a namespace ("" for every namespace).
	Services(ctx context.Context, namespace string) ([]ServiceEndpoints, error)
	// Workloads in a namespace ("" for every namespace).
	Workloads(ctx context.Context, namespace string) ([]WorkloadPods, error)
	// TrafficSplits in a namespace ("" for every namespace).
	TrafficSplits(ctx context.Context, namespace string) ([]TrafficSplit, error)
}

// ServiceEndpoints is a Service and how many of its endpoints are meshed.
type ServiceEndpoints struct {
	Namespace, Name string
	// Meshed is "meshed/total" endpoints, shown as it is; "" for a Service without endpoints.
	Meshed string
}

// WorkloadPods is a workload and its pods, which `skein stat workloads` shows as one row.
type WorkloadPods struct {
	Namespace string
	// Name is "kind/name", as "deployment/web", as the control plane names it.
	Name string
	// Pods are the names of its pods.
	Pods []string
	// Meshed is "meshed/total" pods, shown as it is.
	Meshed string
}

// TrafficSplit is a split of an apex Service among backends.
type TrafficSplit struct {
	Namespace, Name, Apex string
	Backends              []Backend
}

// Backend is a TrafficSplit backend Service and its weight in force.
type Backend struct {
	Service string
	Weight  int32
}

// Source gives `skein stat` its rows from Prometheus, with the queries of this package: the same
// definitions as the control plane's, over the series Prometheus scraped from the proxies.
type Source struct {
	Client *Client
	// Window of the figures; DefaultWindow when zero.
	Window time.Duration
	// At is the end of the window; now when zero.
	At time.Time
	// Cluster names workloads' pods and TrafficSplits. Without it every pod is its own workload
	// ("pod/<name>") and TrafficSplits cannot be shown.
	Cluster Cluster
}

var _ stat.Source = (*Source)(nil)

// Rows asks Prometheus for the figures of every object of a kind in a namespace ("" for all).
func (s *Source) Rows(ctx context.Context, kind stat.Kind, namespace string) ([]stat.Row, error) {
	window := s.Window
	if window == 0 {
		window = DefaultWindow
	}
	if err := CheckWindow(window); err != nil {
		return nil, err
	}
	at := s.At
	if at.IsZero() {
		at = time.Now()
	}
	q := querier{client: s.Client, window: Over(window), at: at}
	switch kind {
	case stat.Services:
		rows, err := q.rows(ctx, Service(namespace, ""), func(l map[string]string) stat.Row {
			name, ns, _ := strings.Cut(l[labelDstService], ".")
			return stat.Row{Namespace: ns, Name: name}
		})
		if err != nil || s.Cluster == nil {
			return rows, err
		}
		services, err := s.Cluster.Services(ctx, namespace)
		if err != nil {
			return nil, err
		}
		known := make([]stat.Row, len(services))
		for i, svc := range services {
			known[i] = stat.Row{Namespace: svc.Namespace, Name: svc.Name, Meshed: svc.Meshed}
		}
		return merge(known, rows), nil
	case stat.Namespaces:
		rows, err := q.rows(ctx, Namespace(namespace), func(l map[string]string) stat.Row { return stat.Row{Name: l[labelNamespace]} })
		if err != nil || s.Cluster == nil {
			return rows, err
		}
		known, err := s.meshedNamespaces(ctx, namespace)
		if err != nil {
			return nil, err
		}
		return merge(known, rows), nil
	case stat.Workloads:
		return s.workloads(ctx, q, namespace)
	case stat.TrafficSplits:
		return s.trafficSplits(ctx, q, namespace)
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// meshedNamespaces are the namespaces with a meshed pod, with how many of their pods are, as the
// control plane lists them.
func (s *Source) meshedNamespaces(ctx context.Context, namespace string) ([]stat.Row, error) {
	workloads, err := s.Cluster.Workloads(ctx, namespace)
	if err != nil {
		return nil, err
	}
	type count struct{ meshed, total int }
	counts := map[string]*count{}
	for _, w := range workloads {
		var m, t int
		if _, err := fmt.Sscanf(w.Meshed, "%d/%d", &m, &t); err != nil {
			continue
		}
		c := counts[w.Namespace]
		if c == nil {
			c = &count{}
			counts[w.Namespace] = c
		}
		c.meshed, c.total = c.meshed+m, c.total+t
	}
	var rows []stat.Row
	for ns, c := range counts {
		if c.meshed > 0 {
			rows = append(rows, stat.Row{Name: ns, Meshed: fmt.Sprintf("%d/%d", c.meshed, c.total)})
		}
	}
	return rows, nil
}

// merge puts the figures of rows into the known rows of the same namespace and name, keeps the
// rows that are not known (traffic to what the cluster no longer has), and sorts them.
func merge(known, rows []stat.Row) []stat.Row {
	figures := map[[2]string]stat.Row{}
	for _, r := range rows {
		figures[[2]string{r.Namespace, r.Name}] = r
	}
	out := make([]stat.Row, 0, len(known)+len(rows))
	for _, k := range known {
		key := [2]string{k.Namespace, k.Name}
		if r, ok := figures[key]; ok {
			r.Meshed = k.Meshed
			k = r
			delete(figures, key)
		}
		out = append(out, k)
	}
	for _, r := range rows {
		if _, ok := figures[[2]string{r.Namespace, r.Name}]; ok {
			out = append(out, r)
		}
	}
	sortRows(out)
	return out
}

func (s *Source) workloads(ctx context.Context, q querier, namespace string) ([]stat.Row, error) {
	if s.Cluster == nil {
		// Each pod that served requests is a row of its own.
		t := Namespace(namespace)
		t.By = []string{labelNamespace, labelPod}
		return q.rows(ctx, t, func(l map[string]string) stat.Row {
			return stat.Row{Namespace: l[labelNamespace], Name: "pod/" + l[labelPod]}
		})
	}
	workloads, err := s.Cluster.Workloads(ctx, namespace)
	if err != nil {
		return nil, err
	}
	var rows []stat.Row
	for _, w := range workloads {
		row := stat.Row{Namespace: w.Namespace, Name: w.Name, Meshed: w.Meshed}
		if len(w.Pods) > 0 {
			got, err := q.rows(ctx, Workload(w.Namespace, w.Pods), func(map[string]string) stat.Row { return row })
			if err != nil {
				return nil, err
			}
			if len(got) == 1 {
				row = got[0]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (s *Source) trafficSplits(ctx context.Context, q querier, namespace string) ([]stat.Row, error) {
	if s.Cluster == nil {
		return nil, errors.New("trafficsplits from Prometheus need the cluster's TrafficSplits, which this source was not given")
	}
	splits, err := s.Cluster.TrafficSplits(ctx, namespace)
	if err != nil {
		return nil, err
	}
	var rows []stat.Row
	for _, ts := range splits {
		figures, err := q.rows(ctx, Backends(ts.Namespace, ts.Apex), func(l map[string]string) stat.Row {
			name, _, _ := strings.Cut(l[labelDstBackend], ".")
			return stat.Row{Backend: name}
		})
		if err != nil {
			return nil, err
		}
		byBackend, total := map[string]stat.Row{}, 0.0
		for _, r := range figures {
			byBackend[r.Backend] = r
			if r.RPS != nil {
				total += *r.RPS
			}
		}
		for _, b := range ts.Backends {
			row := byBackend[b.Service]
			row.Namespace, row.Name, row.Apex, row.Backend, row.Weight = ts.Namespace, ts.Name, ts.Apex, b.Service, ptr(b.Weight)
			if row.RPS != nil && total > 0 {
				row.Observed = ptr(100 * *row.RPS / total)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// querier runs a target's queries at one instant, so that a row's figures cover the same window.
type querier struct {
	client *Client
	window Range
	at     time.Time
}

// rows runs every figure's query for a target and puts the answers together by the target's labels. A figure with no answer (no traffic in the window) stays nil.
func (q querier) rows(ctx context.Context, t Target, newRow func(labels map[string]string) stat.Row) ([]stat.Row, error) {
	type figure struct {
		query string
		set   func(r *stat.Row, v float64)
	}
	figures := []figure{
		{t.SuccessRate(q.window), func(r *stat.Row, v float64) { r.SuccessRate = ptr(100 * v) }},
		{t.RPS(q.window), func(r *stat.Row, v float64) { r.RPS = ptr(v) }},
		{t.Quantile(0.5, q.window), func(r *stat.Row, v float64) { r.LatencyP50 = ptr(v) }},
		{t.Quantile(0.95, q.window), func(r *stat.Row, v float64) { r.LatencyP95 = ptr(v) }},
		{t.Quantile(0.99, q.window), func(r *stat.Row, v float64) { r.LatencyP99 = ptr(v) }},
	}
	if t.Matchers[0] == inbound() {
		figures = append(figures, figure{t.MTLSCoverage(q.window), func(r *stat.Row, v float64) { r.MTLS = ptr(100 * v) }})
	}
	if tcp := t.TCPConnections(); tcp != "" {
		figures = append(figures, figure{tcp, func(r *stat.Row, v float64) { r.TCPConnections = ptr(int64(math.Round(v))) }})
	}
	rows := map[string]*stat.Row{}
	for _, f := range figures {
		samples, err := q.client.Query(ctx, f.query, q.at)
		if err != nil {
			return nil, err
		}
		for _, s := range samples {
			key := rowKey(t.By, s.Labels)
			r, ok := rows[key]
			if !ok {
				r = ptr(newRow(s.Labels))
				rows[key] = r
			}
			// 0/0 is NaN: a figure of no requests, not one to show.
			if !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
				f.set(r, s.Value)
			}
		}
	}
	out := make([]stat.Row, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sortRows(out)
	return out, nil
}

// sortRows puts rows in the order the control plane's source gives them.
func sortRows(rows []stat.Row) {
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		if rows[i].Name != rows[j].Name {
			return rows[i].Name < rows[j].Name
		}
		return rows[i].Backend < rows[j].Backend
	})
}

func rowKey(by []string, labels map[string]string) string {
	parts := make([]string, len(by))
	for i, l := range by {
		parts[i] = labels[l]
	}
	return strings.Join(parts, "\x00")
}

func ptr[T any](v T) *T { return &v }
