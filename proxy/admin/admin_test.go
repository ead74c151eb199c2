package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdmin(t *testing.T) {
	unready := "no certificate yet"
	shutdown := make(chan struct{}, 2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "request_total", Help: "x"}))
	s := &Server{Unready: func() string { return unready }, Shutdown: func() { shutdown <- struct{}{} }, Metrics: reg}
	h := s.Handler()
	do := func(method, path, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("GET", "/ready", "10.0.0.1:1"); w.Code != http.StatusServiceUnavailable || w.Body.String() != "not ready: no certificate yet\n" {
		t.Errorf("/ready before the proxy is ready: %d %q", w.Code, w.Body.String())
	}
	unready = ""
	if w := do("GET", "/ready", "10.0.0.1:1"); w.Code != http.StatusOK {
		t.Errorf("/ready once ready: %d", w.Code)
	}
	if w := do("GET", "/live", "10.0.0.1:1"); w.Code != http.StatusOK {
		t.Errorf("/live: %d", w.Code)
	}
	if w := do("GET", "/metrics", "10.0.0.1:1"); !strings.Contains(w.Body.String(), "request_total 0") {
		t.Errorf("/metrics: %q", w.Body.String())
	}
	if w := do("POST", "/shutdown", "10.0.0.1:1"); w.Code != http.StatusForbidden {
		t.Errorf("/shutdown from another host: %d", w.Code)
	}
	select {
	case <-shutdown:
		t.Fatal("shut down on a remote request")
	case <-time.After(50 * time.Millisecond):
	}
	if w := do("POST", "/shutdown", "127.0.0.1:1"); w.Code != http.StatusOK {
		t.Errorf("/shutdown from localhost: %d", w.Code)
	}
	select {
	case <-shutdown:
	case <-time.After(time.Second):
		t.Fatal("a local /shutdown did not shut down")
	}
	if w := do("GET", "/shutdown", "127.0.0.1:1"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /shutdown: %d", w.Code)
	}
}

func TestPprof(t *testing.T) {
	get := func(s *Server, remote string) int {
		r := httptest.NewRequest("GET", "/debug/pprof/heap", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w.Code
	}
	reg := prometheus.NewRegistry()
	if code := get(&Server{Metrics: reg}, "127.0.0.1:1"); code != http.StatusNotFound {
		t.Errorf("profiles served without Pprof: %d", code)
	}
	on := &Server{Metrics: reg, Pprof: true}
	if code := get(on, "10.0.0.1:1"); code != http.StatusForbidden {
		t.Errorf("profiles to another host: %d", code)
	}
	if code := get(on, "127.0.0.1:1"); code != http.StatusOK {
		t.Errorf("profiles to localhost: %d", code)
	}
}
