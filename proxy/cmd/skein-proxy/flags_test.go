package main

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestXDSAddrs(t *testing.T) {
	tests := []struct {
		name    string
		c       config
		want    []string
		wantErr string
	}{
		{name: "no xDS", c: config{destinationsFile: "/etc/destinations.json"}},
		{name: "a list", c: config{xdsAddr: "10.0.0.1:8443, skein-xds-1:8443,", nodeID: "web-0.default"}, want: []string{"10.0.0.1:8443", "skein-xds-1:8443"}},
		{name: "with a destinations file", c: config{xdsAddr: "skein-xds:8443", nodeID: "web-0.default", destinationsFile: "/etc/destinations.json"}, wantErr: "--destinations-file and --xds-addr are both set"},
		{name: "without a node ID", c: config{xdsAddr: "skein-xds:8443"}, wantErr: "needs --node-id"},
		{name: "a bad node ID", c: config{xdsAddr: "skein-xds:8443", nodeID: "web-0"}, wantErr: "--node-id"},
		{name: "no port", c: config{xdsAddr: "skein-xds", nodeID: "web-0.default"}, wantErr: "not host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.xdsAddrs()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one that says %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("xdsAddrs() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"error", "warn", "info", "debug", "trace"} {
		if _, err := parseLevel(s); err != nil {
			t.Errorf("parseLevel(%q): %v; MeshConfig offers it, so the proxy must take it", s, err)
		}
	}
	if l, _ := parseLevel("trace"); l >= slog.LevelDebug {
		t.Errorf("trace = %v, want below debug", l)
	}
	if _, err := parseLevel("loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("parseLevel(loud) = %v, want an error naming --log-level", err)
	}
}

func TestBadModeIsRefused(t *testing.T) {
	err := run(config{logLevel: "info", mode: "router"})
	if err == nil || !strings.Contains(err.Error(), `--mode: "router" is neither sidecar nor gateway`) {
		t.Errorf("run with --mode=router = %v, want an error naming --mode", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		v          string
		gomemlimit bool
		want       int64
		wantOK     bool
		wantErr    bool
	}{
		{v: "", want: defaultMemoryLimit, wantOK: true},
		{v: "", gomemlimit: true, wantOK: false},
		{v: "20Mi", gomemlimit: true, want: 20 << 20, wantOK: true},
		{v: "512Ki", want: 512 << 10, wantOK: true},
		{v: "1Gi", want: 1 << 30, wantOK: true},
		{v: "20971520", want: 20 << 20, wantOK: true},
		{v: "off", want: 0, wantOK: true},
		{v: "0", want: 0, wantOK: true},
		{v: "20MB", wantErr: true},
		{v: "-1", wantErr: true},
		{v: "9999999999Gi", wantErr: true},
	}
	for _, tt := range tests {
		got, ok, err := memoryLimit(tt.v, tt.gomemlimit)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "--memory-limit") {
				t.Errorf("memoryLimit(%q) = %d, %v; want an error naming --memory-limit", tt.v, got, err)
			}
			continue
		}
		if err != nil || got != tt.want || ok != tt.wantOK {
			t.Errorf("memoryLimit(%q, %v) = %d, %v, %v; want %d, %v", tt.v, tt.gomemlimit, got, ok, err, tt.want, tt.wantOK)
		}
	}
}
