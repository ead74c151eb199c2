// Package admin serves the proxy's admin port: /metrics for Prometheus, /ready and /live for the
// kubelet, and /shutdown, from localhost only, for a Job whose work is done.
package admin

import (
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the admin endpoint.
type Server struct {
	// Unready says why the proxy cannot serve (no certificate yet, no destinations yet, draining),
	// or "" when it can. /ready answers with it, so a proxy slow to start tells what it waits for.
	Unready func() string
	// Shutdown starts a graceful stop.
	Shutdown func()
	Metrics  prometheus.Gatherer
	// Pprof serves Go's profiles under /debug/pprof/, to localhost only: they show memory contents
	// and cost CPU, so they are off unless asked for.
	Pprof bool

	shuttingDown atomic.Bool
}

// Handler is the admin HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("live\n")) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if why := s.Unready(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if s.Pprof {
		mux.Handle("GET /debug/pprof/", localOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/profile", localOnly(http.HandlerFunc(pprof.Profile)))
	}
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		if !fromLocalhost(r) {
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

func fromLocalhost(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fromLocalhost(r) {
			http.Error(w, "profiles are only served to localhost", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
