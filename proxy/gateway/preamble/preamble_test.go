package preamble

import (
	"bytes"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	const target = "web.shop.svc.cluster.local:8080"
	if err := Write(&b, target); err != nil {
		t.Fatal(err)
	}
	b.WriteString("PRI * HTTP/2.0") // what follows is left for the protocol after the preamble
	got, err := Read(&b)
	if err != nil || got != target {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if rest := b.String(); rest != "PRI * HTTP/2.0" {
		t.Errorf("Read consumed more than the preamble: %q is left", rest)
	}
}

func TestReadRejects(t *testing.T) {
	frame := func(target string) string { return string([]byte{version, byte(len(target))}) + target }
	tests := []struct{ name, in, wantErr string }{
		{"nothing", "", "reading the gateway preamble: EOF"},
		{"an HTTP/2 preface instead", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "version 80, want 1"},
		{"a TLS record instead", "\x16\x03\x01\x00", "version 22"},
		{"empty target", string([]byte{version, 0}), "names no target"},
		{"short target", string([]byte{version, 40}) + "web.shop", "reading the gateway preamble's target"},
		{"not an authority", frame("web.shop:8080"), `gateway target: authority "web.shop:8080" does not end in .svc.cluster.local`},
		{"no port", frame("web.shop.svc.cluster.local"), "has no :port"},
		{"port out of range", frame("web.shop.svc.cluster.local:99999"), "not a number in 1-65535"},
		{"upper case", frame("Web.shop.svc.cluster.local:80"), `service "Web" is not a DNS label`},
		{"path in the name", frame("web.shop/x.svc.cluster.local:80"), `namespace "shop/x" is not a DNS label`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Read = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if err := Write(&bytes.Buffer{}, "web:80"); err == nil || !strings.Contains(err.Error(), "gateway target") {
		t.Errorf("Write of a bad target = %v, want a gateway target error", err)
	}
}
