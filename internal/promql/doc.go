// Package promql holds the PromQL that gives Skein's golden metrics (success rate, requests per
// second, latency quantiles, open TCP connections, mTLS coverage) from skein-proxy's metrics, and a
// small client for Prometheus's query API. `skein stat --prometheus-url`, the Grafana dashboard and
// the tests that check them against the control plane all take their queries from here, so that
// there is one definition of each figure.
package promql
