package framework

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestTwoClustersAtOnce starts two API servers side by side, as multicluster suites do, and checks
// that they are independent.
func TestTwoClustersAtOnce(t *testing.T) {
	ctx := context.Background()
	var clusters [2]*Cluster
	for i := range clusters {
		c, err := StartCluster()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Stop(); err != nil {
				t.Error(err)
			}
		})
		clusters[i] = c
	}
	if clusters[0].Config.Host == clusters[1].Config.Host {
		t.Fatalf("both clusters serve at %s", clusters[0].Config.Host)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "only-in-east"}}
	if err := clusters[0].Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	err := clusters[1].Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the second cluster sees the first one's ConfigMap: %v", err)
	}
	for i, c := range clusters {
		out, err := c.Kubectl(ctx, nil, "get", "crd", "meshconfigs.mesh.skein.dev", "certificates.cert-manager.io", "-o", "name")
		if err != nil || out == "" {
			t.Errorf("cluster %d lacks Skein's or cert-manager's CRDs: %v", i, err)
		}
	}
}
