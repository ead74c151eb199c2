// Package admin serves the proxy's admin port: /metrics for Prometheus, /ready and /live for the
// kubelet, and /shutdown, from localhost only, for a Job whose work is done.
package admin

import (
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the admin endpoint.
type Server struct {
	// Ready tells whether the proxy can serve: it has a certificate and is not draining.
	Ready func() bool
	// Shutdown starts a graceful stop.
	Shutdown func()
	Metrics  prometheus.Gatherer

	shuttingDown atomic.Bool
}

// Handler is the admin HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("live\n")) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "shutdown is only accepted from localhost", http.StatusForbidden)
			return
		}
		if s.shuttingDown.CompareAndSwap(false, true) {
			go s.Shutdown()
		}
		_, _ = w.Write([]byte("shutting down\n"))
	})
	return mux
}
