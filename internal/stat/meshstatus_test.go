package stat

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/scheme"
)

// TestMeshStatusRows reads rows from MeshStatuses as the telemetry component writes them (a fake
// client: this checks the reading of the figures; test/telemetry checks them against a real mesh).
func TestMeshStatusRows(t *testing.T) {
	conns := int64(4)
	figures := meshv1.GoldenMetrics{SuccessRate: "95.00%", RPS: "50.00", LatencyP50: "77.8ms", LatencyP95: "162.5ms", LatencyP99: "1.2s", TCPConnections: &conns}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		&meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshStatusName}, Status: meshv1.MeshStatusStatus{
			Namespaces: []meshv1.NamespaceSummary{{Name: "shop", Meshed: "2/2", MTLSCoverage: "100.00%", GoldenMetrics: figures}, {Name: "front", Meshed: "1/1"}},
		}},
		&meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: meshv1.MeshStatusSpec{Namespace: "shop"}, Status: meshv1.MeshStatusStatus{
			Services:  []meshv1.ServiceStatus{{Name: "web", Namespace: "shop", Meshed: "1/1", GoldenMetrics: figures}, {Name: "db", Namespace: "shop"}},
			Workloads: []meshv1.WorkloadStatus{{Name: "deployment/web", Namespace: "shop", GoldenMetrics: figures}},
			TrafficSplits: []meshv1.TrafficSplitSummary{{Name: "web", Namespace: "shop", Apex: "web", Backends: []meshv1.TrafficSplitBackendSummary{
				{Service: "web-v1", Weight: 90, ObservedShare: "89.50%", GoldenMetrics: figures}, {Service: "web-v2", Weight: 10},
			}}},
		}},
		&meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: "front"}, Spec: meshv1.MeshStatusSpec{Namespace: "front"}, Status: meshv1.MeshStatusStatus{
			Services: []meshv1.ServiceStatus{{Name: "ui", Namespace: "front"}},
		}},
	).Build()
	src := MeshStatuses{Client: c}
	ctx := context.Background()

	rows, err := src.Rows(ctx, Services, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Name != "ui" || rows[1].Name != "db" || rows[2].Name != "web" {
		t.Fatalf("services of every namespace: %+v", rows)
	}
	web := rows[2]
	if *web.SuccessRate != 95 || *web.RPS != 50 || *web.LatencyP50 != 77.8 || *web.LatencyP95 != 162.5 || *web.LatencyP99 != 1200 || *web.TCPConnections != 4 {
		t.Errorf("web's figures: %+v", web)
	}
	if rows[1].SuccessRate != nil || rows[1].RPS != nil {
		t.Errorf("a service without traffic has figures: %+v", rows[1])
	}

	if rows, _ := src.Rows(ctx, Services, "shop"); len(rows) != 2 {
		t.Errorf("services in shop: %+v", rows)
	}
	if rows, _ := src.Rows(ctx, Workloads, "shop"); len(rows) != 1 || rows[0].Name != "deployment/web" {
		t.Errorf("workloads in shop: %+v", rows)
	}
	if rows, _ := src.Rows(ctx, Namespaces, ""); len(rows) != 2 || rows[1].Name != "shop" || *rows[1].MTLS != 100 {
		t.Errorf("namespaces: %+v", rows)
	}
	rows, _ = src.Rows(ctx, TrafficSplits, "shop")
	if len(rows) != 2 || rows[0].Backend != "web-v1" || *rows[0].Weight != 90 || *rows[0].Observed != 89.5 || rows[1].Observed != nil {
		t.Errorf("traffic splits in shop: %+v", rows)
	}
}
