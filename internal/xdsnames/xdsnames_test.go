package xdsnames

import (
	"strings"
	"testing"
)

func TestNodeIDRoundTrip(t *testing.T) {
	name, ns, err := ParseNodeID(NodeID("web-7d9f.v2", "shop"))
	if err != nil || name != "web-7d9f.v2" || ns != "shop" {
		t.Fatalf("ParseNodeID = %q, %q, %v", name, ns, err)
	}
	for _, bad := range []string{"", "web", ".shop", "web."} {
		if _, _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}

func TestAliases(t *testing.T) {
	if got := Authority("web", "shop", 8080); got != "web.shop.svc.cluster.local:8080" {
		t.Errorf("Authority = %q", got)
	}
	if got := len(Aliases("web", "shop", 8080)); got != 2 {
		t.Errorf("port 8080 has %d aliases, want 2", got)
	}
	if got := len(Aliases("web", "shop", 80)); got != 5 {
		t.Errorf("port 80 has %d aliases, want 5 (with and without the port)", got)
	}
}

func TestParseAuthority(t *testing.T) {
	got, err := ParseAuthority(Authority("web-2", "shop", 8080))
	if err != nil || got != (ServicePort{Service: "web-2", Namespace: "shop", Port: 8080}) {
		t.Fatalf("ParseAuthority = %+v, %v", got, err)
	}
	tests := []struct{ in, wantErr string }{
		{"", "no :port"},
		{"web.shop.svc.cluster.local", "no :port"},
		{"web.shop.svc.cluster.local:", "not a number"},
		{"web.shop.svc.cluster.local:0", "not a number"},
		{"web.shop.svc.cluster.local:65536", "not a number"},
		{"web.shop.svc.cluster.local:080", "not a number"},
		{"web.shop.svc.cluster.local:+80", "not a number"},
		{"web.shop.svc.cluster.local:80:80", "not a number"},
		{"web.shop:80", "does not end in .svc.cluster.local"},
		{"web.shop.svc.example.org:80", "does not end in .svc.cluster.local"},
		{"web.svc.cluster.local:80", "names no namespace"},
		{"web.shop.more.svc.cluster.local:80", `namespace "shop.more" is not a DNS label`},
		{".shop.svc.cluster.local:80", `service "" is not a DNS label`},
		{"Web.shop.svc.cluster.local:80", `service "Web" is not a DNS label`},
		{"web.-shop.svc.cluster.local:80", `namespace "-shop" is not a DNS label`},
		{"web.sh\nop.svc.cluster.local:80", "is not a DNS label"},
	}
	for _, tt := range tests {
		_, err := ParseAuthority(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseAuthority(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}
