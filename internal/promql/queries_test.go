package promql

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestQueries(t *testing.T) {
	w := Over(time.Minute)
	tests := []struct {
		name, got, want string
	}{
		{"service success rate", Service("shop", "web").SuccessRate(w),
			`(sum by (dst_service) (increase(response_total{direction="outbound",dst_service="web.shop",classification="success"}[60s])) or ` +
				`sum by (dst_service) (increase(response_total{direction="outbound",dst_service="web.shop"}[60s])) * 0) / ` +
				`sum by (dst_service) (increase(response_total{direction="outbound",dst_service="web.shop"}[60s]))`},
		{"services of a namespace, RPS", Service("shop", "").RPS(w),
			`sum by (dst_service) (rate(response_total{direction="outbound",dst_service=~"[^.]+\\.shop"}[60s]))`},
		{"services of every namespace, p99", Service("", "").Quantile(0.99, Over(30*time.Second)),
			`histogram_quantile(0.99, sum by (le, dst_service) (increase(response_latency_ms_bucket{direction="outbound",dst_service=~"[^.]+\\..+"}[30s])))`},
		{"a service in every namespace, regexp characters quoted", Service("", "a.b").RPS(w),
			`sum by (dst_service) (rate(response_total{direction="outbound",dst_service=~"a\\.b\\..+"}[60s]))`},
		{"service TCP connections", Service("shop", "web").TCPConnections(),
			`sum by (dst_service) (tcp_open_total{direction="outbound",dst_service="web.shop"}) - (sum by (dst_service) (tcp_close_total{direction="outbound",dst_service="web.shop"}) or ` +
				`sum by (dst_service) (tcp_open_total{direction="outbound",dst_service="web.shop"}) * 0)`},
		{"routes p50", Route("shop", "web").Quantile(0.5, w),
			`histogram_quantile(0.5, sum by (le, dst_service, route) (increase(response_latency_ms_bucket{direction="outbound",dst_service="web.shop"}[60s])))`},
		{"routes have no TCP figure", Route("shop", "web").TCPConnections(), ``},
		{"TrafficSplit backends RPS", Backends("shop", "web").RPS(w),
			`sum by (dst_backend) (rate(response_total{direction="outbound",dst_service="web.shop"}[60s]))`},
		{"workload p95", Workload("shop", []string{"web-1", "web-2"}).Quantile(0.95, w),
			`histogram_quantile(0.95, sum by (le) (increase(response_latency_ms_bucket{direction="inbound",namespace="shop",pod=~"web-1|web-2"}[60s])))`},
		{"workload RPS", Workload("shop", []string{"web-1"}).RPS(Over(1500 * time.Millisecond)),
			`sum(rate(response_total{direction="inbound",namespace="shop",pod=~"web-1"}[1500ms]))`},
		{"workload TCP connections", Workload("shop", []string{"web-1"}).TCPConnections(),
			`sum(tcp_open_total{direction="inbound",namespace="shop",pod=~"web-1"}) - (sum(tcp_close_total{direction="inbound",namespace="shop",pod=~"web-1"}) or ` +
				`sum(tcp_open_total{direction="inbound",namespace="shop",pod=~"web-1"}) * 0)`},
		{"namespace mTLS coverage", Namespace("shop").MTLSCoverage(w),
			`(sum by (namespace) (increase(request_total{direction="inbound",namespace="shop",tls="true"}[60s])) or ` +
				`sum by (namespace) (increase(request_total{direction="inbound",namespace="shop"}[60s])) * 0) / ` +
				`sum by (namespace) (increase(request_total{direction="inbound",namespace="shop"}[60s]))`},
		{"a dashboard's window", Namespace("").RPS("$window"),
			`sum by (namespace) (rate(response_total{direction="inbound"}[$window]))`},
		{"every namespace RPS", Namespace("").RPS(w),
			`sum by (namespace) (rate(response_total{direction="inbound"}[60s]))`},
		{"label values are quoted", Service("sh\"op", "web").RPS(w),
			`sum by (dst_service) (rate(response_total{direction="outbound",dst_service="web.sh\"op"}[60s]))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(tt.got).To(Equal(tt.want))
		})
	}
}

func TestCheckWindow(t *testing.T) {
	tests := []struct {
		window time.Duration
		ok     bool
	}{
		{time.Minute, true},
		{1500 * time.Millisecond, true},
		{time.Second, true},
		{0, false},
		{-time.Minute, false},
		{500 * time.Millisecond, false},
		{time.Second + time.Microsecond, false},
	}
	for _, tt := range tests {
		err := CheckWindow(tt.window)
		if (err == nil) != tt.ok {
			t.Errorf("CheckWindow(%s) = %v, want ok=%v", tt.window, err, tt.ok)
		}
	}
}
