// Package certmanager_test checks that cert-manager, run from its Go module by the test framework,
// issues and renews the certificates Skein's identity rests on against a real kube-apiserver: a
// self-signed trust anchor, a CA Issuer backed by it, and certificates signed by that CA.
package certmanager_test

import (
	"context"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/scheme"
	"github.com/skeinmesh/skein/test/framework"
)

var (
	cluster *framework.Cluster
	// k8s is a client that also knows cert-manager's kinds.
	k8s client.Client
	ctx = context.Background()
)

func TestCertManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cert-manager Suite")
}

var _ = BeforeSuite(func() {
	var err error
	cluster, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)

	stop, err := framework.StartCertManager(cluster)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)

	s := scheme.New()
	utilruntime.Must(cmapi.AddToScheme(s))
	k8s, err = client.New(cluster.Config, client.Options{Scheme: s})
	Expect(err).NotTo(HaveOccurred())
})
