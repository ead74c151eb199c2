// Package grafana writes Skein's Grafana dashboard (config/grafana/skein-dashboard.json) from the
// PromQL of internal/promql, so that its panels show the figures `skein stat` and the control plane
// give. `make generate` rewrites the file.
package grafana
