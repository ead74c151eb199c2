// Package api_test checks Skein's API as users meet it: the samples, the validation the API server
// itself applies, and what kubectl shows, against a real kube-apiserver.
package api_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/skeinmesh/skein/test/framework"
)

var (
	cluster *framework.Cluster
	ctx     = context.Background()
)

func TestAPI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "API Suite")
}

var _ = BeforeSuite(func() {
	var err error
	cluster, err = framework.StartCluster()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	stopWebhooks, err := framework.StartWebhooks(cluster)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stopWebhooks)
})
