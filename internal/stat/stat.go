package stat

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Kind is what the rows are about.
type Kind string

// Kinds of rows.
const (
	Services      Kind = "services"
	Workloads     Kind = "workloads"
	Namespaces    Kind = "namespaces"
	TrafficSplits Kind = "trafficsplits"
)

// kindNames are the names a user may give each kind, as kubectl accepts short forms.
var kindNames = map[string]Kind{
	"services": Services, "service": Services, "svc": Services,
	"workloads": Workloads, "workload": Workloads, "deployments": Workloads, "deploy": Workloads,
	"namespaces": Namespaces, "namespace": Namespaces, "ns": Namespaces,
	"trafficsplits": TrafficSplits, "trafficsplit": TrafficSplits, "ts": TrafficSplits,
}

// ParseKind reads a kind as a user types it.
func ParseKind(s string) (Kind, error) {
	if k, ok := kindNames[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q: want services, workloads, namespaces or trafficsplits", s)
}

// Row is one line of figures. A nil figure was not observed (no traffic in the window) and
// shows as "-".
type Row struct {
	// Namespace of the object; empty for a namespace row.
	Namespace string `json:"namespace,omitempty"`
	// Name of the service, workload (kind/name, as "deployment/web"), namespace or TrafficSplit.
	Name string `json:"name"`
	// Meshed is "meshed/total" pods or endpoints.
	Meshed string `json:"meshed,omitempty"`
	// SuccessRate is the share of responses that were not failures, in percent.
	SuccessRate *float64 `json:"successRate,omitempty"`
	// RPS is responses per second over the window.
	RPS *float64 `json:"rps,omitempty"`
	// Latencies in milliseconds.
	LatencyP50 *float64 `json:"latencyP50Ms,omitempty"`
	LatencyP95 *float64 `json:"latencyP95Ms,omitempty"`
	LatencyP99 *float64 `json:"latencyP99Ms,omitempty"`
	// TCPConnections is how many TCP connections are open.
	TCPConnections *int64 `json:"tcpConnections,omitempty"`
	// MTLS is the share of requests carried over mTLS, in percent.
	MTLS *float64 `json:"mtlsPercent,omitempty"`

	// For a TrafficSplit backend: the split's apex Service, the backend Service, its weight in
	// force and the share of the apex's requests it was observed to take, in percent.
	Apex     string   `json:"apex,omitempty"`
	Backend  string   `json:"backend,omitempty"`
	Weight   *int32   `json:"weight,omitempty"`
	Observed *float64 `json:"observedPercent,omitempty"`
}

// Source answers for rows of a kind in a namespace ("" for every namespace).
type Source interface {
	Rows(ctx context.Context, kind Kind, namespace string) ([]Row, error)
}

// Output formats.
const (
	Table = ""
	Wide  = "wide"
	JSON  = "json"
)

// ParseFormat checks an -o value.
func ParseFormat(s string) (string, error) {
	switch s {
	case Table, "table":
		return Table, nil
	case Wide, JSON:
		return s, nil
	}
	return "", fmt.Errorf("unknown output format %q: want wide or json", s)
}

// Print writes rows as a table (wide adds mTLS) or as a JSON array. A NAMESPACE column comes first
// when rows have namespaces; APEX, BACKEND, WEIGHT and OBSERVED come last when rows are about
// TrafficSplits.
func Print(w io.Writer, rows []Row, format string) error {
	switch format {
	case JSON:
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case Table, "table", Wide:
	default:
		return fmt.Errorf("unknown output format %q: want wide or json", format)
	}
	var namespaced, split bool
	for _, r := range rows {
		namespaced = namespaced || r.Namespace != ""
		split = split || r.Apex != ""
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	head := []string{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"}
	if namespaced {
		head = append([]string{"NAMESPACE"}, head...)
	}
	if format == Wide {
		head = append(head, "MTLS")
	}
	if split {
		head = append(head, "APEX", "BACKEND", "WEIGHT", "OBSERVED")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		cells := []string{r.Name, dash(r.Meshed), percent(r.SuccessRate), rate(r.RPS), millis(r.LatencyP50), millis(r.LatencyP95), millis(r.LatencyP99), count(r.TCPConnections)}
		if namespaced {
			cells = append([]string{r.Namespace}, cells...)
		}
		if format == Wide {
			cells = append(cells, percent(r.MTLS))
		}
		if split {
			weight := "-"
			if r.Weight != nil {
				weight = strconv.Itoa(int(*r.Weight))
			}
			cells = append(cells, dash(r.Apex), dash(r.Backend), weight, percent(r.Observed))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + "%"
}

func rate(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + "rps"
}

// millis shows a latency with the precision that matters at its size.
func millis(v *float64) string {
	if v == nil {
		return "-"
	}
	if *v < 10 {
		return strconv.FormatFloat(*v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(*v, 'f', 0, 64) + "ms"
}

func count(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}
