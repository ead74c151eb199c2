package api_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func keyOf(u *unstructured.Unstructured) client.ObjectKey {
	return client.ObjectKey{Namespace: u.GetNamespace(), Name: u.GetName()}
}

func parse(doc string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	ExpectWithOffset(1, yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
	return u
}

const (
	goodSplit = `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
`
	goodLink = `
apiVersion: mesh.skein.dev/v1alpha1
kind: Link
metadata: {name: NAME, namespace: default}
spec:
  targetClusterName: west
  clusterCredentialsSecret: west-credentials
  gatewayAddress: gateway.west.example.com
  gatewayIdentity: spiffe://cluster.local/ns/skein-multicluster/sa/skein-gateway
`
	goodWorkload = `
apiVersion: mesh.skein.dev/v1alpha1
kind: ExternalWorkload
metadata: {name: NAME, namespace: default}
spec:
  meshTLS: {identity: spiffe://cluster.local/ns/default/sa/vm, serverName: vm.default.cluster.local}
  workloadIPs: [{ip: 192.0.2.1}, {ip: "2001:db8::1"}]
`
	goodMeshConfig = `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {}
`
)

// A bad object is refused by the API server with a message that names the field, whether it is
// created or replaces a good one; a refused update leaves the stored object as it was.
var _ = Describe("Validation by the API server", func() {
	type badCase struct {
		good string // a valid object of the kind, whose metadata.name is NAME
		bad  string // the same object with one mistake
		says []string
	}
	var n int
	DescribeTable("rejects",
		func(c badCase) {
			n++
			name := fmt.Sprintf("case-%d", n)
			fill := func(doc string) *unstructured.Unstructured {
				u := parse(doc)
				if u.GetName() == "NAME" {
					u.SetName(name)
				}
				return u
			}

			// stored reads what the API server holds under the good object's name ("" when nothing).
			type state struct {
				resourceVersion string
				spec            any
			}
			stored := func() state {
				u := fill(c.good)
				err := cluster.Client.Get(ctx, keyOf(u), u)
				if apierrors.IsNotFound(err) {
					return state{}
				}
				Expect(err).NotTo(HaveOccurred())
				return state{u.GetResourceVersion(), u.Object["spec"]}
			}
			expectRefused := func(err error) {
				Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
				for _, s := range c.says {
					Expect(err.Error()).To(ContainSubstring(s))
				}
			}

			By("refusing to create it")
			before := stored()
			bad := fill(c.bad)
			expectRefused(cluster.Client.Create(ctx, bad))
			Expect(stored()).To(Equal(before), "nothing stored changes")

			By("refusing to replace a good object with it, which stays as it was")
			if bad.GetName() != fill(c.good).GetName() {
				return // a rename is not an update
			}
			if before.resourceVersion == "" {
				good := fill(c.good)
				Expect(cluster.Client.Create(ctx, good)).To(Succeed())
				DeferCleanup(cluster.Client.Delete, ctx, good)
			}
			before = stored()
			Expect(before.spec).NotTo(BeNil())
			bad = fill(c.bad)
			bad.SetResourceVersion(before.resourceVersion)
			expectRefused(cluster.Client.Update(ctx, bad))
			Expect(stored()).To(Equal(before), "nothing stored changes")
		},
		Entry("a MeshConfig scraping more often than every second", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {telemetry: {scrapeInterval: 100ms}}
`, []string{"spec.telemetry.scrapeInterval must be between 1s and 5m"}}),
		Entry("a MeshConfig whose window holds fewer than two scrapes", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {telemetry: {window: 15s, scrapeInterval: 10s}}
`, []string{"spec.telemetry.scrapeInterval must be at most half of spec.telemetry.window"}}),
		Entry("a TrafficSplit with a negative weight", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: -10}, {service: web-v2, weight: 10}]
`, []string{"spec.backends[0].weight", "greater than or equal to 0"}}),
		Entry("a TrafficSplit whose weights are all zero", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: 0}, {service: web-v2, weight: 0}]
`, []string{"spec.backends: at least one backend must have a weight above zero"}}),
		Entry("a TrafficSplit with a duplicate backend", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: 50}, {service: web-v1, weight: 50}]
`, []string{"spec.backends[1]", "Duplicate value"}}),
		Entry("a TrafficSplit whose apex is one of its backends", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web, weight: 50}, {service: web-v2, weight: 50}]
`, []string{"spec.backends: the apex service spec.service cannot also be a backend"}}),
		Entry("a TrafficSplit with no backends", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
`, []string{"spec.backends: Required value"}}),
		Entry("a TrafficSplit whose match names a service that is not a backend", badCase{goodSplit, `
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: NAME, namespace: default}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
  matches: [{pathPrefix: /beta, backend: web-v3}]
`, []string{"spec.matches[].backend must name one of spec.backends"}}),
		Entry("a Link with no credentials", badCase{goodLink, `
apiVersion: mesh.skein.dev/v1alpha1
kind: Link
metadata: {name: NAME, namespace: default}
spec:
  targetClusterName: west
  gatewayAddress: gateway.west.example.com
  gatewayIdentity: spiffe://cluster.local/ns/skein-multicluster/sa/skein-gateway
`, []string{"spec.clusterCredentialsSecret: Required value"}}),
		Entry("a Link with an invalid gateway address", badCase{goodLink, `
apiVersion: mesh.skein.dev/v1alpha1
kind: Link
metadata: {name: NAME, namespace: default}
spec:
  targetClusterName: west
  clusterCredentialsSecret: west-credentials
  gatewayAddress: "gateway west!"
  gatewayIdentity: spiffe://cluster.local/ns/skein-multicluster/sa/skein-gateway
`, []string{"spec.gatewayAddress", "must be an IP address or a DNS name"}}),
		Entry("a Link whose probe timeout outlasts its period", badCase{goodLink, `
apiVersion: mesh.skein.dev/v1alpha1
kind: Link
metadata: {name: NAME, namespace: default}
spec:
  targetClusterName: west
  clusterCredentialsSecret: west-credentials
  gatewayAddress: 192.0.2.7
  gatewayIdentity: spiffe://cluster.local/ns/skein-multicluster/sa/skein-gateway
  probeSpec: {period: 2s, timeout: 5s}
`, []string{"spec.probeSpec.timeout must not be longer than spec.probeSpec.period"}}),
		Entry("an ExternalWorkload with an invalid IP", badCase{goodWorkload, `
apiVersion: mesh.skein.dev/v1alpha1
kind: ExternalWorkload
metadata: {name: NAME, namespace: default}
spec:
  meshTLS: {identity: spiffe://cluster.local/ns/default/sa/vm, serverName: vm.default.cluster.local}
  workloadIPs: [{ip: 192.0.2.300}]
`, []string{"spec.workloadIPs[0].ip", "must be an IPv4 or IPv6 address"}}),
		Entry("an ExternalWorkload with more than two IPs", badCase{goodWorkload, `
apiVersion: mesh.skein.dev/v1alpha1
kind: ExternalWorkload
metadata: {name: NAME, namespace: default}
spec:
  meshTLS: {identity: spiffe://cluster.local/ns/default/sa/vm, serverName: vm.default.cluster.local}
  workloadIPs: [{ip: 192.0.2.1}, {ip: "2001:db8::1"}, {ip: 192.0.2.2}]
`, []string{"spec.workloadIPs", "must have at most 2 items"}}),
		Entry("an ExternalWorkload with two IPs of one family", badCase{goodWorkload, `
apiVersion: mesh.skein.dev/v1alpha1
kind: ExternalWorkload
metadata: {name: NAME, namespace: default}
spec:
  meshTLS: {identity: spiffe://cluster.local/ns/default/sa/vm, serverName: vm.default.cluster.local}
  workloadIPs: [{ip: 192.0.2.1}, {ip: 192.0.2.2}]
`, []string{"spec.workloadIPs: two addresses must be one IPv4 and one IPv6"}}),
		Entry("an ExternalWorkload with no identity", badCase{goodWorkload, `
apiVersion: mesh.skein.dev/v1alpha1
kind: ExternalWorkload
metadata: {name: NAME, namespace: default}
spec:
  meshTLS: {serverName: vm.default.cluster.local}
  workloadIPs: [{ip: 192.0.2.1}]
`, []string{"spec.meshTLS.identity: Required value"}}),
		Entry("a MeshConfig not named default", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: production}
spec: {}
`, []string{"metadata.name: a MeshConfig must be named 'default'"}}),
		Entry("a workload certificate lifetime under 1 hour", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {identity: {workloadCertLifetime: 59m}}
`, []string{"spec.identity.workloadCertLifetime must be at least 1h"}}),
		Entry("a workload certificate lifetime over 7 days", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {identity: {workloadCertLifetime: 169h}}
`, []string{"spec.identity.workloadCertLifetime must be at most 168h"}}),
		Entry("a workload certificate lifetime that is not a duration", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {identity: {workloadCertLifetime: one day}}
`, []string{"spec.identity.workloadCertLifetime"}}),
		Entry("a proxy with two ports the same", badCase{goodMeshConfig, `
apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {proxy: {ports: {inbound: 4140}}}
`, []string{"spec.proxy.ports: inbound, outbound, control and admin must be four different ports"}}),
	)
})
