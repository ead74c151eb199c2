package stat

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// MeshStatuses reads rows from the MeshStatus objects, the control plane's own figures: services,
// workloads and TrafficSplits from each namespace's MeshStatus, namespaces from the cluster-wide one.
type MeshStatuses struct {
	Client client.Reader
}

// Rows lists the rows of kind in namespace ("" for all), sorted by namespace and name.
func (s MeshStatuses) Rows(ctx context.Context, kind Kind, namespace string) ([]Row, error) {
	list := &meshv1.MeshStatusList{}
	if err := s.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing MeshStatuses: %w", err)
	}
	var rows []Row
	for _, ms := range list.Items {
		st := &ms.Status
		if kind == Namespaces {
			if ms.Name != meshv1.MeshStatusName {
				continue
			}
			for _, n := range st.Namespaces {
				if namespace == "" || n.Name == namespace {
					r := fromGolden(Row{Name: n.Name, Meshed: n.Meshed}, n.GoldenMetrics)
					r.MTLS = parsePercent(n.MTLSCoverage)
					rows = append(rows, r)
				}
			}
			continue
		}
		if ms.Spec.Namespace == "" || namespace != "" && ms.Spec.Namespace != namespace {
			continue
		}
		switch kind {
		case Services:
			for _, svc := range st.Services {
				rows = append(rows, fromGolden(Row{Namespace: svc.Namespace, Name: svc.Name, Meshed: svc.Meshed}, svc.GoldenMetrics))
			}
		case Workloads:
			for _, w := range st.Workloads {
				r := fromGolden(Row{Namespace: w.Namespace, Name: w.Name, Meshed: w.Meshed}, w.GoldenMetrics)
				r.MTLS = parsePercent(w.MTLSCoverage)
				rows = append(rows, r)
			}
		case TrafficSplits:
			for _, ts := range st.TrafficSplits {
				for _, b := range ts.Backends {
					weight := b.Weight
					r := fromGolden(Row{Namespace: ts.Namespace, Name: ts.Name, Apex: ts.Apex, Backend: b.Service, Weight: &weight}, b.GoldenMetrics)
					r.Observed = parsePercent(b.ObservedShare)
					rows = append(rows, r)
				}
			}
		default:
			return nil, fmt.Errorf("unknown kind %q", kind)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		return rows[i].Name < rows[j].Name
	})
	return rows, nil
}

// fromGolden fills a row's figures from the decimal strings a MeshStatus carries.
func fromGolden(r Row, g meshv1.GoldenMetrics) Row {
	r.SuccessRate = parsePercent(g.SuccessRate)
	if v, err := strconv.ParseFloat(g.RPS, 64); err == nil {
		r.RPS = &v
	}
	r.LatencyP50, r.LatencyP95, r.LatencyP99 = parseMillis(g.LatencyP50), parseMillis(g.LatencyP95), parseMillis(g.LatencyP99)
	r.TCPConnections = g.TCPConnections
	return r
}

// parsePercent reads "99.50%"; nil for "" or anything else.
func parsePercent(s string) *float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return nil
	}
	return &v
}

// parseMillis reads a duration ("12.5ms") in milliseconds; nil for "" or anything else.
func parseMillis(s string) *float64 {
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil
	}
	v := float64(d) / float64(time.Millisecond)
	return &v
}
