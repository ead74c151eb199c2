package destinations

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestPickFollowsWeights(t *testing.T) {
	v1 := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:80")}}
	v2 := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.2:80")}}
	svc := Service{Authority: "web:80", Backends: []Backend{{Name: "v1", Weight: 90, Endpoints: v1}, {Name: "v2", Weight: 10, Endpoints: v2}}}
	counts := map[netip.AddrPort]int{}
	for i := 0; i < 1000; i++ {
		counts[svc.Pick(float64(i) / 1000)[0].Addr]++
	}
	if counts[v1[0].Addr] != 900 || counts[v2[0].Addr] != 100 {
		t.Errorf("picks = %v, want 900 to v1 and 100 to v2", counts)
	}
	emptied := Service{Authority: "web:80", Backends: []Backend{{Name: "v1", Weight: 90}, {Name: "v2", Weight: 10, Endpoints: v2}}}
	for _, r := range []float64{0, 0.5, 0.99} {
		if got := emptied.Pick(r); len(got) != 1 || got[0] != v2[0] {
			t.Errorf("with v1 out of endpoints, Pick(%v) = %v, want v2's", r, got)
		}
	}
	zero := Service{Authority: "web:80", Endpoints: v1, Backends: []Backend{{Name: "v2", Weight: 0, Endpoints: v2}}}
	if got := zero.Pick(0.5); got[0] != v1[0] {
		t.Errorf("with every weight zero, Pick = %v, want the service's own endpoints", got)
	}
}

func TestAliasesFindTheService(t *testing.T) {
	snap, err := NewSnapshot([]Service{{
		Authority: "web.shop.svc.cluster.local:80", Aliases: []string{"web.shop:80", "web.shop"},
		Backends: []Backend{{Name: "v2", Weight: 1, Endpoints: []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.2:80"), Identity: "spiffe://x/ns/shop/sa/web"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"web.shop:80", "WEB.shop", "web.shop.svc.cluster.local:80"} {
		if snap.ByAuthority(a) == nil {
			t.Errorf("%q finds no service", a)
		}
	}
	if ep, ok := snap.Endpoint(netip.MustParseAddrPort("10.0.0.2:80")); !ok || ep.Identity == "" {
		t.Errorf("a backend's endpoint is not known by address: %v %v", ep, ok)
	}
}

func TestChooseTriesMatchesFirst(t *testing.T) {
	stable := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:80")}}
	canary := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.2:80")}}
	svc := Service{
		Authority: "web:80",
		Backends:  []Backend{{Name: "stable", Weight: 1, Endpoints: stable}},
		Matches:   []Match{{PathPrefix: "/api", Headers: []HeaderMatch{{Name: "X-Canary", Value: "always"}}, Backend: Backend{Name: "canary", Endpoints: canary}}},
	}
	tests := []struct {
		path    string
		headers http.Header
		want    []Endpoint
	}{
		{"/api/v1", http.Header{"X-Canary": {"always"}}, canary},
		{"/api/v1", http.Header{"X-Canary": {"sometimes", "always"}}, canary},
		{"/api/v1", http.Header{"X-Canary": {"never"}}, stable},
		{"/api/v1", nil, stable},
		{"/web", http.Header{"X-Canary": {"always"}}, stable},
	}
	for _, tt := range tests {
		if got := svc.Choose(tt.path, tt.headers, 0.5); got[0] != tt.want[0] {
			t.Errorf("Choose(%q, %v) = %v, want %v", tt.path, tt.headers, got, tt.want)
		}
	}
}

// TestRouteNamesRouteAndBackend: what metrics label a request with.
func TestRouteNamesRouteAndBackend(t *testing.T) {
	v1 := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:80")}}
	v2 := []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.2:80")}}
	split := Service{
		Authority: "web:80",
		Backends:  []Backend{{Name: "web-v1:80", Weight: 1, Endpoints: v1}, {Name: "web-v2:80", Weight: 1, Endpoints: v2}},
		Matches: []Match{
			{Name: "canary", Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}, Backend: Backend{Name: "web-v2:80", Endpoints: v2}},
			{PathPrefix: "/beta", Backend: Backend{Name: "web-v2:80", Endpoints: v2}},
		},
	}
	plain := Service{Authority: "api:80", Endpoints: v1}
	tests := []struct {
		svc                 *Service
		path                string
		headers             http.Header
		r                   float64
		wantRoute, wantBknd string
	}{
		{&split, "/", http.Header{"X-Canary": {"1"}}, 0, "canary", "web-v2:80"},
		{&split, "/beta/x", nil, 0, "match-1", "web-v2:80"},
		{&split, "/", nil, 0.2, DefaultRoute, "web-v1:80"},
		{&split, "/", nil, 0.7, DefaultRoute, "web-v2:80"},
		{&plain, "/", nil, 0.7, DefaultRoute, "api:80"},
	}
	for _, tt := range tests {
		c := tt.svc.Route(tt.path, tt.headers, tt.r)
		if c.Route != tt.wantRoute || c.Backend != tt.wantBknd || len(c.Endpoints) != 1 {
			t.Errorf("%s Route(%q, %v, %v) = %+v, want route %q backend %q", tt.svc.Authority, tt.path, tt.headers, tt.r, c, tt.wantRoute, tt.wantBknd)
		}
	}
}
