package xdsnames

import "testing"

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
