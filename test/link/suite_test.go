// Package link_test runs the Link controller of cluster A (west) against a second API server, cluster
// B (east), with credentials made by `skein multicluster link` and a real TLS gateway stand-in.
package link_test

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

var (
	ctx  = context.Background()
	west *framework.Mesh
	east *framework.Cluster
	// stopEast stops east's webhooks and API server, once.
	stopEast    func() error
	eastStopped bool
	gw          *framework.Gateway
	// skeinCLI is the skein command, built from cmd/skein.
	skeinCLI string
)

func TestLink(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Link Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	skeinCLI = netns.Build(GinkgoT(), "github.com/skeinmesh/skein/cmd/skein")
	west, err = framework.StartMesh(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(west.Stop)

	east, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	// east runs no control plane, but its MeshConfig passes through the admission webhooks.
	stopWebhooks, err := framework.StartWebhooks(east)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() error { return stopEast() })

	stopEast = func() error {
		if eastStopped {
			return nil
		}
		eastStopped = true
		return errors.Join(stopWebhooks(), east.Stop())
	}

	gw, err = framework.StartGateway(west.ControlPlane, west.Roots, gatewayIdentity)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gw.Stop)

	for _, c := range []*framework.Cluster{west.Cluster, east} {
		for _, ns := range []string{framework.SystemNamespace, "shop"} {
			err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if err != nil && !isAlreadyExists(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		}
	}
	Expect(east.Client.Create(ctx, &meshv1.MeshConfig{
		ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName},
		Spec:       meshv1.MeshConfigSpec{Multicluster: meshv1.MulticlusterSpec{Enabled: true, GatewayPort: gw.TLSPort}},
	})).To(Succeed())
})

// gatewayIdentity is east's gateway's identity; both clusters have the trust domain cluster.local.
var gatewayIdentity = framework.GatewayIdentity
