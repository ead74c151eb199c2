package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAuthoritiesAreBounded sends 100,000 distinct Host headers and peer identities: the series
// stay within the bound.
func TestAuthoritiesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	i := 0
	h := m.HTTP(Outbound, Labels{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		LabelsFrom(r.Context()).ServerID = fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/sa-%d", i)
	}))
	for i = range 100_000 {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = fmt.Sprintf("host-%d.example:80", i)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	// The first ten requests each bring a new authority and identity; every later one is "other"
	// for both.
	if n := testutil.CollectAndCount(m.requests); n != 11 {
		t.Errorf("%d request_total series, want 10 authorities and %q", n, OtherAuthority)
	}
	other := []string{Outbound, OtherAuthority, "false", "", "", "", OtherAuthority, ""}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(other...)); got != 100_000-10 {
		t.Errorf("other = %v, want %d", got, 100_000-10)
	}
}

func TestResponsesAreClassified(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	const client = "spiffe://cluster.local/ns/shop/sa/client"
	for _, code := range []int{200, 404, 503} {
		h := m.HTTP(Inbound, Labels{TLS: true, ClientID: client}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = "web:80"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	for _, tt := range []struct{ code, class string }{{"200", Success}, {"404", Success}, {"503", Failure}} {
		if got := testutil.ToFloat64(m.responses.WithLabelValues(Inbound, "web:80", "true", "", "", "", "", client, tt.code, tt.class)); got != 1 {
			t.Errorf("response_total{status_code=%s,classification=%s} = %v, want 1", tt.code, tt.class, got)
		}
	}
}

func TestServiceName(t *testing.T) {
	tests := []struct{ authority, want string }{
		{"web.shop.svc.cluster.local:80", "web.shop"},
		{"web.shop.svc:8080", "web.shop"},
		{"web.shop.svc.cluster.local", "web.shop"},
		{"web.shop:80", "web.shop"},
		{"example.com:443", "example.com"},
		{"svcs.example.com:443", "svcs.example.com"},
	}
	for _, tt := range tests {
		if got := ServiceName(tt.authority); got != tt.want {
			t.Errorf("ServiceName(%q) = %q, want %q", tt.authority, got, tt.want)
		}
	}
}

// On a connection with serial labels, each request starts from the base labels: what the router
// filled in for one request is not counted for the next.
func TestSerialLabelsStartAfreshForEachRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, 10)
	h := m.HTTP(Outbound, Labels{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/routed" {
			LabelsFrom(r.Context()).DstService = "web.shop"
		}
	}))
	ctx := WithSerialLabels(t.Context())
	for _, path := range []string{"/routed", "/unrouted"} {
		r := httptest.NewRequest("GET", path, nil).WithContext(ctx)
		r.Host = "web:80"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	routed := []string{Outbound, "web:80", "false", "web.shop", "", "", "", ""}
	unrouted := []string{Outbound, "web:80", "false", "", "", "", "", ""}
	if a, b := testutil.ToFloat64(m.requests.WithLabelValues(routed...)), testutil.ToFloat64(m.requests.WithLabelValues(unrouted...)); a != 1 || b != 1 {
		t.Errorf("routed %v, unrouted %v; want one each", a, b)
	}
}
