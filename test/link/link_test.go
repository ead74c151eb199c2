package link_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/scheme"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/test/framework"
)

const timeout, interval = 30 * time.Second, 100 * time.Millisecond

var linkKey = client.ObjectKey{Namespace: framework.SystemNamespace, Name: "east"}

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }

// runLink runs `skein multicluster link` against east and returns its stdout; stderr goes with the error.
func runLink(args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, skeinCLI, append([]string{"multicluster", "link", "--kubeconfig", east.Kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, nil
}

// linkManifest runs `skein multicluster link` against east and returns the Secret and the Link it
// prints, the Link changed to probe the stand-in's admin port quickly.
func linkManifest() (*corev1.Secret, *meshv1.Link) {
	out, err := runLink("--cluster-name", "east", "--gateway-address", gw.Host)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	secret, link := &corev1.Secret{}, &meshv1.Link{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	ExpectWithOffset(1, dec.Decode(secret)).To(Succeed())
	ExpectWithOffset(1, dec.Decode(link)).To(Succeed())
	ExpectWithOffset(1, secret.Kind).To(Equal("Secret"))
	ExpectWithOffset(1, link.Kind).To(Equal("Link"))
	ExpectWithOffset(1, link.Namespace).To(Equal(framework.SystemNamespace))
	link.Spec.ProbeSpec = meshv1.ProbeSpec{Port: gw.AdminPort, Period: &metav1.Duration{Duration: time.Second},
		Timeout: &metav1.Duration{Duration: 500 * time.Millisecond}, FailureThreshold: 2}
	return secret, link
}

func applyLink(secret *corev1.Secret, link *meshv1.Link) {
	s := secret.DeepCopy()
	if err := west.Client.Create(ctx, s); apierrors.IsAlreadyExists(err) {
		ExpectWithOffset(1, west.Client.Update(ctx, s)).To(Succeed())
	} else {
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
	}
	ExpectWithOffset(1, west.Client.Create(ctx, link.DeepCopy())).To(Succeed())
}

func remoteService(ns, name string, exported bool, ports ...corev1.ServicePort) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports}}
	if exported {
		svc.Labels = map[string]string{meshv1.ExportedLabel: "true"}
	}
	return svc
}

func tcpPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port + 1000)}
}

func getLink(g Gomega) *meshv1.Link {
	link := &meshv1.Link{}
	g.Expect(west.Client.Get(ctx, linkKey, link)).To(Succeed())
	return link
}

func mirror(g Gomega, ns, name string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	svc, slice := &corev1.Service{}, &discoveryv1.EndpointSlice{}
	g.Expect(west.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
	g.Expect(west.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, slice)).To(Succeed())
	return svc, slice
}

func expectGone(g Gomega, ns, name string) {
	key := client.ObjectKey{Namespace: ns, Name: name}
	g.Expect(apierrors.IsNotFound(west.Client.Get(ctx, key, &corev1.Service{}))).To(BeTrue(), "Service %s still exists", key)
	g.Expect(apierrors.IsNotFound(west.Client.Get(ctx, key, &discoveryv1.EndpointSlice{}))).To(BeTrue(), "EndpointSlice %s still exists", key)
}

func endpointReady(g Gomega, ns, name string) bool {
	_, slice := mirror(g, ns, name)
	g.Expect(slice.Endpoints).To(HaveLen(1))
	return ptr.Deref(slice.Endpoints[0].Conditions.Ready, false)
}

func degradedReason(g Gomega) string {
	c := meta.FindStatusCondition(getLink(g).Status.Conditions, meshv1.ConditionDegraded)
	g.Expect(c).NotTo(BeNil())
	if c.Status != metav1.ConditionTrue {
		return ""
	}
	return c.Reason
}

func eventReasons(g Gomega, name string) []string {
	events := &eventsv1.EventList{}
	g.Expect(west.Client.List(ctx, events, client.InNamespace(framework.SystemNamespace))).To(Succeed())
	var reasons []string
	for _, e := range events.Items {
		if e.Regarding.Kind == "Link" && e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

var _ = Describe("Link controller", Ordered, func() {
	var secret *corev1.Secret
	var link *meshv1.Link

	It("gets credentials from skein multicluster link that read Services and EndpointSlices only", func() {
		secret, link = linkManifest()
		Expect(link.Spec.GatewayPort).To(Equal(gw.TLSPort))
		Expect(link.Spec.GatewayIdentity).To(Equal(gatewayIdentity.String()))
		Expect(link.Spec.ClusterCredentialsSecret).To(Equal(secret.Name))
		cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
		Expect(err).NotTo(HaveOccurred())
		reader, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())
		Expect(reader.List(ctx, &corev1.ServiceList{})).To(Succeed())
		Expect(reader.List(ctx, &discoveryv1.EndpointSliceList{})).To(Succeed())
		Expect(apierrors.IsForbidden(reader.List(ctx, &corev1.SecretList{}))).To(BeTrue())
		Expect(apierrors.IsForbidden(reader.Create(ctx, remoteService("shop", "sneaky", true)))).To(BeTrue())

		By("running again, idempotently")
		_, _ = linkManifest()

		By("saying what is missing without --gateway-address")
		_, err = runLink("--cluster-name", "east")
		Expect(err).To(MatchError(ContainSubstring("the gateway Service skein-system/skein-gateway does not exist")))
		Expect(err).To(MatchError(ContainSubstring("--gateway-address")))
		_, err = runLink()
		Expect(err).To(MatchError(ContainSubstring("--cluster-name is required")))
		_, err = runLink("--cluster-name", "west", "--kubeconfig", west.Kubeconfig)
		Expect(err).To(MatchError(ContainSubstring("spec.multicluster.enabled false")), "west does not run a gateway")
	})

	It("mirrors an exported Service within seconds, and not one that is not exported", func() {
		Expect(east.Client.Create(ctx, remoteService("shop", "db", false, tcpPort("sql", 5432)))).To(Succeed())
		Expect(east.Client.Create(ctx, remoteService("shop", "web", true, tcpPort("http", 80), tcpPort("grpc", 9090)))).To(Succeed())
		applyLink(secret, link)

		Eventually(func(g Gomega) {
			svc, slice := mirror(g, "shop", "web-east")
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
			g.Expect(svc.Spec.Selector).To(BeEmpty())
			g.Expect(svc.Annotations).To(HaveKeyWithValue(meshv1.RemoteServiceAnnotation, "web.shop"))
			g.Expect(svc.Labels).To(HaveKeyWithValue(meshv1.MirroredFromLabel, "east"))
			g.Expect(svc.Labels).To(HaveKeyWithValue(meshv1.LinkLabel, framework.SystemNamespace+".east"))
			g.Expect(svc.Spec.Ports).To(HaveLen(2))
			g.Expect(svc.Spec.Ports[0]).To(And(HaveField("Name", "http"), HaveField("Port", int32(80)), HaveField("Protocol", corev1.ProtocolTCP)))
			g.Expect(svc.Spec.Ports[1]).To(And(HaveField("Name", "grpc"), HaveField("Port", int32(9090))))

			g.Expect(slice.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, "web-east"))
			g.Expect(slice.Labels).To(HaveKeyWithValue(discoveryv1.LabelManagedBy, "link.mesh.skein.dev"))
			g.Expect(slice.Labels).To(HaveKeyWithValue(meshv1.MirroredFromLabel, "east"))
			g.Expect(slice.Labels).To(HaveKeyWithValue(meshv1.LinkLabel, framework.SystemNamespace+".east"))
			g.Expect(slice.AddressType).To(Equal(discoveryv1.AddressTypeIPv4))
			g.Expect(slice.Ports).To(ConsistOf(
				discoveryv1.EndpointPort{Name: ptr.To("http"), Port: ptr.To(gw.TLSPort), Protocol: ptr.To(corev1.ProtocolTCP)},
				discoveryv1.EndpointPort{Name: ptr.To("grpc"), Port: ptr.To(gw.TLSPort), Protocol: ptr.To(corev1.ProtocolTCP)},
			))
			g.Expect(slice.Endpoints).To(HaveLen(1))
			ep := slice.Endpoints[0]
			g.Expect(ep.Addresses).To(Equal([]string{gw.Host}))
			g.Expect(ep.TargetRef).To(Equal(&corev1.ObjectReference{Kind: "Link", Namespace: framework.SystemNamespace, Name: "east"}))
			g.Expect(ep.Conditions.Ready).To(Equal(ptr.To(true)))

			l := getLink(g)
			g.Expect(l.Finalizers).To(ContainElement(meshv1.LinkFinalizer))
			g.Expect(l.Status.MirroredServices).To(Equal([]string{"shop/web-east"}))
			g.Expect(l.Status.MirroredServiceCount).To(Equal(int32(1)))
			g.Expect(l.Status.Gateway).NotTo(BeNil())
			g.Expect(l.Status.Gateway.Alive).To(BeTrue())
			g.Expect(l.Status.Gateway.LastProbeTime).NotTo(BeNil())
			g.Expect(meta.IsStatusConditionTrue(l.Status.Conditions, meshv1.ConditionReady)).To(BeTrue())
			g.Expect(l.Status.ObservedGeneration).To(Equal(l.Generation))
		}, timeout, interval).Should(Succeed())
		// The watch delivered db before web, so had db been mirrored, it would be by now.
		Expect(apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "db-east"}, &corev1.Service{}))).To(BeTrue())
	})

	It("shows the Link with kubectl get", func() {
		Eventually(func(g Gomega) {
			out, err := west.Kubectl(ctx, nil, "get", "link", "-n", framework.SystemNamespace, "-o", "wide")
			g.Expect(err).NotTo(HaveOccurred())
			lines := strings.Split(strings.TrimSpace(out), "\n")
			g.Expect(lines).To(HaveLen(2))
			g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "CLUSTER", "GATEWAY", "ALIVE", "SERVICES", "READY", "AGE", "LATENCY"}))
			fields := strings.Fields(lines[1])
			g.Expect(fields[:6]).To(Equal([]string{"east", "east", gw.Host, "true", "1", "True"}))
		}, timeout, interval).Should(Succeed())
	})

	It("lists the Link in the MeshStatus", func() {
		Eventually(func(g Gomega) {
			ms := &meshv1.MeshStatus{}
			g.Expect(west.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshStatusName}, ms)).To(Succeed())
			g.Expect(ms.Status.Links).To(ContainElement(meshv1.LinkSummary{
				Name: framework.SystemNamespace + "/east", Cluster: "east", Alive: true, MirroredServices: 1}))
		}, timeout, interval).Should(Succeed())
	})

	It("updates a mirror when the remote ports change", func() {
		Eventually(func(g Gomega) {
			svc := &corev1.Service{}
			g.Expect(east.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, svc)).To(Succeed())
			svc.Spec.Ports = []corev1.ServicePort{tcpPort("http", 8080), {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
			g.Expect(east.Client.Update(ctx, svc)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) {
			svc, slice := mirror(g, "shop", "web-east")
			g.Expect(svc.Spec.Ports).To(HaveLen(2))
			g.Expect(svc.Spec.Ports[0]).To(And(HaveField("Name", "http"), HaveField("Port", int32(8080))))
			g.Expect(svc.Spec.Ports[1]).To(And(HaveField("Name", "dns"), HaveField("Port", int32(53)), HaveField("Protocol", corev1.ProtocolUDP)))
			g.Expect(slice.Ports).To(ConsistOf(
				discoveryv1.EndpointPort{Name: ptr.To("http"), Port: ptr.To(gw.TLSPort), Protocol: ptr.To(corev1.ProtocolTCP)},
				discoveryv1.EndpointPort{Name: ptr.To("dns"), Port: ptr.To(gw.TLSPort), Protocol: ptr.To(corev1.ProtocolUDP)},
			))
		}, timeout, interval).Should(Succeed())
	})

	It("removes the mirror when the Service is unexported, and brings it back when exported again", func() {
		setExported := func(v bool) {
			Eventually(func(g Gomega) {
				svc := &corev1.Service{}
				g.Expect(east.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, svc)).To(Succeed())
				if v {
					svc.Labels = map[string]string{meshv1.ExportedLabel: "true"}
				} else {
					svc.Labels = nil
				}
				g.Expect(east.Client.Update(ctx, svc)).To(Succeed())
			}, timeout, interval).Should(Succeed())
		}
		setExported(false)
		Eventually(func(g Gomega) {
			expectGone(g, "shop", "web-east")
			g.Expect(getLink(g).Status.MirroredServiceCount).To(BeZero())
		}, timeout, interval).Should(Succeed())
		setExported(true)
		Eventually(func(g Gomega) { mirror(g, "shop", "web-east") }, timeout, interval).Should(Succeed())
	})

	It("removes the mirror when the remote Service is deleted", func() {
		Expect(east.Client.Create(ctx, remoteService("shop", "cart", true, tcpPort("http", 80)))).To(Succeed())
		Eventually(func(g Gomega) { mirror(g, "shop", "cart-east") }, timeout, interval).Should(Succeed())
		Expect(east.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}})).To(Succeed())
		Eventually(func(g Gomega) { expectGone(g, "shop", "cart-east") }, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) { mirror(g, "shop", "web-east") }, timeout, interval).Should(Succeed())
	})

	It("leaves alone a local Service holding a mirror's name, and reports it", func() {
		mine := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-east", Labels: map[string]string{"owner": "me"}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "mine"}, Ports: []corev1.ServicePort{tcpPort("http", 7000)}}}
		Expect(west.Client.Create(ctx, mine)).To(Succeed())
		Expect(east.Client.Create(ctx, remoteService("shop", "api", true, tcpPort("http", 80)))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(degradedReason(g)).To(Equal(meshv1.ReasonNameConflict))
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonNameConflict))
		}, timeout, interval).Should(Succeed())
		got := &corev1.Service{}
		Expect(west.Client.Get(ctx, client.ObjectKeyFromObject(mine), got)).To(Succeed())
		Expect(got.Labels).To(Equal(map[string]string{"owner": "me"}))
		Expect(got.Spec.Selector).To(Equal(map[string]string{"app": "mine"}))
		Expect(got.Spec.Ports[0].Port).To(Equal(int32(7000)))
		Expect(apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKeyFromObject(mine), &discoveryv1.EndpointSlice{}))).To(BeTrue())
		// The rest is still mirrored.
		Eventually(func(g Gomega) { g.Expect(endpointReady(g, "shop", "web-east")).To(BeTrue()) }, timeout, interval).Should(Succeed())

		Expect(east.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"}})).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(degradedReason(g)).To(BeEmpty()) }, timeout, interval).Should(Succeed())
		Expect(west.Client.Get(ctx, client.ObjectKeyFromObject(mine), got)).To(Succeed())
	})

	It("reports an exported Service whose namespace does not exist here, and does not create it", func() {
		Expect(east.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-east"}})).To(Succeed())
		Expect(east.Client.Create(ctx, remoteService("only-east", "solo", true, tcpPort("http", 80)))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(degradedReason(g)).To(Equal(meshv1.ReasonNamespaceMissing))
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonNamespaceMissing))
		}, timeout, interval).Should(Succeed())
		Expect(apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKey{Name: "only-east"}, &corev1.Namespace{}))).To(BeTrue())
		Eventually(func(g Gomega) { mirror(g, "shop", "web-east") }, timeout, interval).Should(Succeed())
		Expect(east.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "only-east", Name: "solo"}})).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(degradedReason(g)).To(BeEmpty()) }, timeout, interval).Should(Succeed())
	})

	It("withdraws the endpoints after failureThreshold failed probes, and restores them after one success", func() {
		gw.SetReady(false)
		Eventually(func(g Gomega) {
			g.Expect(endpointReady(g, "shop", "web-east")).To(BeFalse())
			l := getLink(g)
			g.Expect(l.Status.Gateway.Alive).To(BeFalse())
			g.Expect(degradedReason(g)).To(Equal(meshv1.ReasonGatewayUnreachable))
			g.Expect(meta.IsStatusConditionTrue(l.Status.Conditions, meshv1.ConditionReady)).To(BeFalse())
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonGatewayUnreachable))
		}, timeout, interval).Should(Succeed())
		gw.SetReady(true)
		Eventually(func(g Gomega) {
			g.Expect(endpointReady(g, "shop", "web-east")).To(BeTrue())
			g.Expect(getLink(g).Status.Gateway.Alive).To(BeTrue())
			g.Expect(degradedReason(g)).To(BeEmpty())
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonGatewayAlive))
		}, timeout, interval).Should(Succeed())
	})

	It("withdraws the endpoints while the gateway presents another identity", func() {
		Expect(gw.PresentAs(west.ControlPlane, spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "impostor"})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(endpointReady(g, "shop", "web-east")).To(BeFalse())
			g.Expect(degradedReason(g)).To(Equal(meshv1.ReasonGatewayIdentityMismatch))
			g.Expect(meta.FindStatusCondition(getLink(g).Status.Conditions, meshv1.ConditionDegraded).Message).To(ContainSubstring("impostor"))
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonGatewayIdentityMismatch))
		}, timeout, interval).Should(Succeed())
		Expect(gw.PresentAs(west.ControlPlane, gatewayIdentity)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(endpointReady(g, "shop", "web-east")).To(BeTrue()) }, timeout, interval).Should(Succeed())
	})

	It("mirrors what spec.selector picks instead of the exported Services, when it has one", func() {
		Eventually(func(g Gomega) {
			db := &corev1.Service{}
			g.Expect(east.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "db"}, db)).To(Succeed())
			db.Labels = map[string]string{"tier": "data"}
			g.Expect(east.Client.Update(ctx, db)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		picked := link.DeepCopy()
		picked.Name, picked.Spec.TargetClusterName = "picked", "picked"
		picked.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "data"}}
		Expect(west.Client.Create(ctx, picked)).To(Succeed())
		Eventually(func(g Gomega) {
			svc, _ := mirror(g, "shop", "db-picked")
			g.Expect(svc.Labels).To(HaveKeyWithValue(meshv1.LinkLabel, framework.SystemNamespace+".picked"))
			l := &meshv1.Link{}
			g.Expect(west.Client.Get(ctx, client.ObjectKeyFromObject(picked), l)).To(Succeed())
			g.Expect(l.Status.MirroredServices).To(Equal([]string{"shop/db-picked"}))
		}, timeout, interval).Should(Succeed())
		Expect(apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-picked"}, &corev1.Service{}))).To(BeTrue())
		Expect(west.Client.Delete(ctx, picked)).To(Succeed())
		Eventually(func(g Gomega) { expectGone(g, "shop", "db-picked") }, timeout, interval).Should(Succeed())
	})

	It("reports bad credentials and mirrors nothing with them", func() {
		bad := secret.DeepCopy()
		bad.Name = "cluster-credentials-bad"
		cfg, err := clientcmd.Load(secret.Data["kubeconfig"])
		Expect(err).NotTo(HaveOccurred())
		for _, a := range cfg.AuthInfos {
			a.Token = "not-a-token"
		}
		bad.Data["kubeconfig"], err = clientcmd.Write(*cfg)
		Expect(err).NotTo(HaveOccurred())
		badLink := link.DeepCopy()
		badLink.Name, badLink.Spec.ClusterCredentialsSecret = "bad", bad.Name
		applyLink(bad, badLink)
		missing := link.DeepCopy()
		missing.Name, missing.Spec.ClusterCredentialsSecret = "nosecret", "no-such-secret"
		Expect(west.Client.Create(ctx, missing)).To(Succeed())

		for _, name := range []string{"bad", "nosecret"} {
			Eventually(func(g Gomega) {
				l := &meshv1.Link{}
				g.Expect(west.Client.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: name}, l)).To(Succeed())
				c := meta.FindStatusCondition(l.Status.Conditions, meshv1.ConditionDegraded)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(c.Reason).To(Equal(meshv1.ReasonCredentialsInvalid))
				g.Expect(eventReasons(g, name)).To(ContainElement(meshv1.ReasonCredentialsInvalid))
				g.Expect(l.Status.MirroredServiceCount).To(BeZero())
			}, timeout, interval).Should(Succeed())
			list := &corev1.ServiceList{}
			Expect(west.Client.List(ctx, list, client.MatchingLabels{meshv1.LinkLabel: framework.SystemNamespace + "." + name})).To(Succeed())
			Expect(list.Items).To(BeEmpty())
		}
		for _, l := range []*meshv1.Link{badLink, missing} {
			Expect(west.Client.Delete(ctx, l)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKeyFromObject(l), &meshv1.Link{}))).To(BeTrue())
			}, timeout, interval).Should(Succeed())
		}
	})

	It("removes every mirror, then its finalizer, when the Link is deleted", func() {
		Expect(east.Client.Create(ctx, remoteService("shop", "cart", true, tcpPort("http", 80)))).To(Succeed())
		Eventually(func(g Gomega) {
			mirror(g, "shop", "cart-east")
			mirror(g, "shop", "web-east")
		}, timeout, interval).Should(Succeed())
		Expect(west.Client.Delete(ctx, &meshv1.Link{ObjectMeta: metav1.ObjectMeta{Namespace: linkKey.Namespace, Name: linkKey.Name}})).To(Succeed())
		Eventually(func(g Gomega) {
			expectGone(g, "shop", "web-east")
			expectGone(g, "shop", "cart-east")
			g.Expect(apierrors.IsNotFound(west.Client.Get(ctx, linkKey, &meshv1.Link{}))).To(BeTrue())
		}, timeout, interval).Should(Succeed())
		// The user's Service of the same shape survives.
		Expect(west.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "api-east"}, &corev1.Service{})).To(Succeed())
	})

	It("reports a remote API server that stopped, keeping the mirrors as last read", func() {
		applyLink(secret, link)
		Eventually(func(g Gomega) {
			g.Expect(endpointReady(g, "shop", "web-east")).To(BeTrue())
			g.Expect(meta.IsStatusConditionTrue(getLink(g).Status.Conditions, meshv1.ConditionReady)).To(BeTrue())
		}, timeout, interval).Should(Succeed())
		if err := stopEast(); err != nil {
			// kube-apiserver drains the open watches, ours among them, for longer than envtest waits
			// on SIGTERM; envtest then kills it, which stops it all the same.
			Expect(err.Error()).To(ContainSubstring("timeout waiting for process kube-apiserver to stop"))
		}
		Expect(east.Client.List(ctx, &corev1.ServiceList{})).NotTo(Succeed(), "east's API server still answers")
		Eventually(func(g Gomega) {
			g.Expect(degradedReason(g)).To(Equal(meshv1.ReasonClusterUnreachable))
			g.Expect(eventReasons(g, "east")).To(ContainElement(meshv1.ReasonClusterUnreachable))
		}, timeout, interval).Should(Succeed())
		// The gateway still answers, so the mirrors it serves stay ready.
		Eventually(func(g Gomega) { g.Expect(endpointReady(g, "shop", "web-east")).To(BeTrue()) }, timeout, interval).Should(Succeed())
		Expect(west.Client.Delete(ctx, &meshv1.Link{ObjectMeta: metav1.ObjectMeta{Namespace: linkKey.Namespace, Name: linkKey.Name}})).To(Succeed())
		Eventually(func(g Gomega) {
			expectGone(g, "shop", "web-east")
			g.Expect(apierrors.IsNotFound(west.Client.Get(ctx, linkKey, &meshv1.Link{}))).To(BeTrue())
		}, timeout, interval).Should(Succeed())
	})
})
