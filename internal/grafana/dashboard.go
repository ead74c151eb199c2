package grafana

import (
	"bytes"
	"encoding/json"

	"github.com/skeinmesh/skein/internal/promql"
)

// Path is where the dashboard lives in the repository.
const Path = "config/grafana/skein-dashboard.json"

// The dashboard's variables, as its queries use them.
const (
	varDatasource = "${datasource}"
	varNamespace  = "$namespace"
	// varService is a dst_service value, "<name>.<namespace>".
	varService = "$service"
	varWindow  = promql.Range("$window")
)

// Quantiles are the latency quantiles every latency panel shows.
var Quantiles = []struct {
	Q    float64
	Name string
}{{0.5, "p50"}, {0.95, "p95"}, {0.99, "p99"}}

// Selections of series by the dashboard's variables. They are written as the Targets of
// internal/promql would be for a known namespace and service, with the variables in the values.
var (
	servicesOfNamespace = promql.Target{
		Matchers: []promql.Matcher{{Label: "direction", Value: "outbound"}, {Label: "dst_service", Value: `[^.]+\.` + varNamespace, Regexp: true}},
		By:       []string{"dst_service"}, TCP: true,
	}
	routesOfService = promql.Target{
		Matchers: []promql.Matcher{{Label: "direction", Value: "outbound"}, {Label: "dst_service", Value: varService}},
		By:       []string{"dst_service", "route"},
	}
	backendsOfService = promql.Target{
		Matchers: []promql.Matcher{{Label: "direction", Value: "outbound"}, {Label: "dst_service", Value: varService}},
		By:       []string{"dst_backend"},
	}
	podsOfNamespace = promql.Target{
		Matchers: []promql.Matcher{{Label: "direction", Value: "inbound"}, {Label: "namespace", Value: varNamespace}},
		By:       []string{"pod"}, TCP: true,
	}
	namespace = promql.Target{
		Matchers: []promql.Matcher{{Label: "direction", Value: "inbound"}, {Label: "namespace", Value: varNamespace}},
		By:       []string{"namespace"}, TCP: true,
	}
)

// Dashboard is Grafana's JSON model of the dashboard.
func Dashboard() ([]byte, error) {
	d := dashboard{
		UID: "skein-golden-metrics", Title: "Skein: golden metrics", Tags: []string{"skein", "service-mesh"},
		Description:   "Success rate, requests per second and latency of meshed services, routes and pods, from skein-proxy's metrics: the same PromQL as skein stat --prometheus-url.",
		SchemaVersion: 39, Editable: true, Refresh: "10s", GraphTooltip: 1,
		Time: timeRange{From: "now-1h", To: "now"},
		Templating: templating{List: []variable{
			{Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus"},
			{Name: "namespace", Label: "Namespace", Type: "query", Datasource: ds(), Refresh: 2, Sort: 1,
				Query:      map[string]any{"query": `label_values(response_total, namespace)`, "refId": "namespace"},
				Definition: `label_values(response_total, namespace)`},
			{Name: "service", Label: "Service", Type: "query", Datasource: ds(), Refresh: 2, Sort: 1,
				Query:      map[string]any{"query": `label_values(response_total{direction="outbound", dst_service=~"[^.]+\\.$namespace"}, dst_service)`, "refId": "service"},
				Definition: `label_values(response_total{direction="outbound", dst_service=~"[^.]+\\.$namespace"}, dst_service)`},
			{Name: "window", Label: "Window", Type: "custom", Query: "1m,5m,15m",
				Current: map[string]any{"text": "1m", "value": "1m"},
				Options: []map[string]any{{"text": "1m", "value": "1m", "selected": true}, {"text": "5m", "value": "5m", "selected": false}, {"text": "15m", "value": "15m", "selected": false}}},
		}},
	}
	layout := &grid{}
	d.add(layout.row("Services in $namespace (seen by their clients' proxies)"))
	d.add(layout.panel(successPanel("Success rate", servicesOfNamespace, "{{dst_service}}")))
	d.add(layout.panel(rpsPanel("Requests per second", servicesOfNamespace, "{{dst_service}}")))
	d.add(layout.panel(latencyPanel("Latency", servicesOfNamespace, "{{dst_service}}")))
	d.add(layout.panel(panel{Title: "Open TCP connections", Type: "timeseries", Unit: "short",
		Targets: []target{{Expr: servicesOfNamespace.TCPConnections(), Legend: "{{dst_service}}"}}}))

	d.add(layout.row("Routes of $service"))
	d.add(layout.panel(successPanel("Success rate per route", routesOfService, "{{route}}")))
	d.add(layout.panel(rpsPanel("Requests per second per route", routesOfService, "{{route}}")))
	d.add(layout.panel(latencyPanel("Latency per route", routesOfService, "{{route}}")))
	d.add(layout.panel(rpsPanel("Requests per second per backend (TrafficSplit)", backendsOfService, "{{dst_backend}}")))
	d.add(layout.panel(successPanel("Success rate per backend (TrafficSplit)", backendsOfService, "{{dst_backend}}")))
	d.add(layout.panel(latencyPanel("Latency per backend (TrafficSplit)", backendsOfService, "{{dst_backend}}")))

	d.add(layout.row("Pods in $namespace (seen by their own proxies)"))
	d.add(layout.panel(panel{Title: "mTLS coverage of inbound requests", Type: "timeseries", Unit: "percentunit", Min: ptr(0), Max: ptr(1),
		Targets: []target{{Expr: namespace.MTLSCoverage(varWindow), Legend: "{{namespace}}"}}}))
	d.add(layout.panel(successPanel("Inbound success rate", podsOfNamespace, "{{pod}}")))
	d.add(layout.panel(rpsPanel("Inbound requests per second", podsOfNamespace, "{{pod}}")))
	d.add(layout.panel(panel{Title: "Inbound open TCP connections", Type: "timeseries", Unit: "short",
		Targets: []target{{Expr: podsOfNamespace.TCPConnections(), Legend: "{{pod}}"}}}))

	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the PromQL keeps its > and &, readable in the file
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func successPanel(title string, t promql.Target, legend string) panel {
	return panel{Title: title, Type: "timeseries", Unit: "percentunit", Min: ptr(0), Max: ptr(1),
		Targets: []target{{Expr: t.SuccessRate(varWindow), Legend: legend}}}
}

func rpsPanel(title string, t promql.Target, legend string) panel {
	return panel{Title: title, Type: "timeseries", Unit: "reqps", Targets: []target{{Expr: t.RPS(varWindow), Legend: legend}}}
}

func latencyPanel(title string, t promql.Target, legend string) panel {
	p := panel{Title: title, Type: "timeseries", Unit: "ms"}
	for _, q := range Quantiles {
		p.Targets = append(p.Targets, target{Expr: t.Quantile(q.Q, varWindow), Legend: legend + " " + q.Name})
	}
	return p
}

func ptr(f float64) *float64 { return &f }

func ds() *datasource { return &datasource{Type: "prometheus", UID: varDatasource} }
