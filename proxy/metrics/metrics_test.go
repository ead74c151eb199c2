package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAuthoritiesAreBounded sends 100,000 distinct Host headers: the series stay within the bound.
func TestAuthoritiesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	h := m.HTTP(Outbound, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i := range 100_000 {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = fmt.Sprintf("host-%d.example:80", i)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if n := testutil.CollectAndCount(m.requests); n != 11 {
		t.Errorf("%d request_total series, want 10 authorities and %q", n, OtherAuthority)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(Outbound, OtherAuthority)); got != 100_000-10 {
		t.Errorf("other = %v, want %d", got, 100_000-10)
	}
}

func TestResponsesAreClassified(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	for _, code := range []int{200, 404, 503} {
		h := m.HTTP(Inbound, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = "web:80"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	for _, tt := range []struct{ code, class string }{{"200", "success"}, {"404", "success"}, {"503", "failure"}} {
		if got := testutil.ToFloat64(m.responses.WithLabelValues(Inbound, "web:80", tt.code, tt.class)); got != 1 {
			t.Errorf("response_total{status_code=%s,classification=%s} = %v, want 1", tt.code, tt.class, got)
		}
	}
}
