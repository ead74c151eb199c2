package spiffe

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr bool
	}{
		{in: "spiffe://cluster.local/ns/default/sa/web", want: ID{"cluster.local", "default", "web"}},
		{in: "spiffe://example.org/ns/a-b/sa/c.d", want: ID{"example.org", "a-b", "c.d"}},
		{in: "https://cluster.local/ns/default/sa/web", wantErr: true},
		{in: "spiffe://cluster.local/ns/default", wantErr: true},
		{in: "spiffe://cluster.local/ns//sa/web", wantErr: true},
		{in: "spiffe://cluster.local/ns/default/sa/web/extra", wantErr: true},
		{in: "spiffe://cluster.local:80/ns/default/sa/web", wantErr: true},
		{in: "spiffe://cluster.local/ns/default/sa/web?x=1", wantErr: true},
		{in: "spiffe://cluster.local/ns/def%61ult/sa/web", wantErr: true},
		{in: "spiffe://user@cluster.local/ns/default/sa/web", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if !tt.wantErr && got.URL().String() != tt.in {
			t.Errorf("Parse(%q).URL() = %q", tt.in, got.URL())
		}
	}
}
