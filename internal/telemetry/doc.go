// Package telemetry is the control plane's view of the traffic: it scrapes the /metrics of every
// meshed pod's proxy, keeps each proxy's samples over a window, and computes the golden metrics
// (success rate, requests per second, latency percentiles, mTLS coverage, open TCP connections)
// per service, route, TrafficSplit backend, workload, namespace and mesh. It computes them as
// PromQL's rate() and histogram_quantile() do over the same window, so that a user's Prometheus
// and the MeshStatus agree.
package telemetry
