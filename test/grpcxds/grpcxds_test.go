package grpcxds_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

var _ = Describe("A grpc-go client with the xds resolver", func() {
	AfterEach(func() {
		Expect(rejected()).To(BeZero(), "grpc-go rejected none of the control plane's resources")
	})

	It("is answered by every endpoint of the Service, and follows its EndpointSlice", func() {
		ns := namespace("endpoints")
		slice := backend(ns, "greeter", startServers(network(), "greeter-0", "greeter-1", "greeter-2"))
		client := startClient(ns, "greeter")

		By("round-robining over the three endpoints")
		seen := expectAnswersFrom(client, 0, "greeter-0", "greeter-1", "greeter-2")

		By("leaving out the endpoint removed from the EndpointSlice")
		slice.Endpoints = slice.Endpoints[:2]
		Expect(k8s.Update(ctx, slice)).To(Succeed())
		expectAnswersFrom(client, seen, "greeter-0", "greeter-1")
		Expect(client).NotTo(gexec.Exit(), "the client runs on one channel throughout")
	})

	It("sends the Service's traffic where its TrafficSplit says", func() {
		ns := namespace("split")
		n := network()
		backend(ns, "greeter", startServers(n, "stable-0"))
		backend(ns, "greeter-canary", startServers(n, "canary-0"))
		client := startClient(ns, "greeter")
		seen := expectAnswersFrom(client, 0, "stable-0")

		By("moving every request to the split's only backend")
		split := &meshv1.TrafficSplit{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeter"},
			Spec: meshv1.TrafficSplitSpec{Service: "greeter", Backends: []meshv1.TrafficSplitBackend{
				{Service: "greeter-canary", Weight: 100},
			}},
		}
		Expect(k8s.Create(ctx, split)).To(Succeed())
		seen = expectAnswersFrom(client, seen, "canary-0")

		By("returning to the Service's own endpoints once the split is deleted")
		Expect(k8s.Delete(ctx, split)).To(Succeed())
		expectAnswersFrom(client, seen, "stable-0")
		Expect(client).NotTo(gexec.Exit())
	})
})
