package localmesh

import "testing"

func TestExpand(t *testing.T) {
	vars := map[string]string{"NS": "shop", "SA": "web"}
	tests := []struct{ in, want string }{
		{"spiffe://cluster.local/ns/$(NS)/sa/$(SA)", "spiffe://cluster.local/ns/shop/sa/web"},
		{"$(MISSING) stays", "$(MISSING) stays"},
		{"$$(NS) is escaped", "$(NS) is escaped"},
		{"a lone $ and $(unclosed", "a lone $ and $(unclosed"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := expand(tt.in, vars); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
