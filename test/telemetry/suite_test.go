// Package telemetry_test checks the golden metrics end to end: real proxies in network namespaces
// carry a client's load, at a known rate, to a server with a known latency distribution and share
// of failures; the control plane scrapes them and writes MeshStatuses, which kubectl and
// `skein stat` show.
package telemetry_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

var (
	ctx  = context.Background()
	fm   *framework.Mesh
	mesh *localmesh.Mesh
	// skein is the built CLI.
	skein string
)

func TestTelemetry(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Telemetry Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(netns.Supported()).To(Succeed())
	network, err := netns.NewNetwork(GinkgoT(), "tel")
	Expect(err).NotTo(HaveOccurred())
	fm, err = framework.StartMesh(ctx, network.Gateway.String())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(fm.Stop)
	mesh, err = localmesh.New(ctx, GinkgoT(), localmesh.Options{
		Client: fm.Client, Network: network, IdentityAddr: fm.ControlPlane.IdentityAddr, IdentityServerName: framework.IdentityServerName,
		TrustAnchors: string(fm.Anchors), XDSAddrs: []string{fm.ControlPlane.XDSAddr}, XDSServerName: framework.XDSServerName,
	})
	Expect(err).NotTo(HaveOccurred())
	skein = netns.Build(GinkgoT(), "github.com/skeinmesh/skein/cmd/skein")
})
