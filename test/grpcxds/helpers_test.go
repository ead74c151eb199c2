package grpcxds_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

// servicePort is the port of every test Service, and targetPort the port its servers listen on;
// portName names both.
const (
	servicePort int32 = 50051
	targetPort  int32 = 8080
	portName          = "grpc"
)

// window is how many of a client's latest answers an assertion looks at: enough for each of three
// round-robin endpoints to answer several times.
const window = 30

// start runs cmd until the spec ends; its stderr goes to the spec's log, and its stdout too when
// logOut is set.
func start(cmd *exec.Cmd, logOut bool) *gexec.Session {
	var out io.Writer
	if logOut {
		out = GinkgoWriter
	}
	s, err := gexec.Start(cmd, out, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { s.Kill().Wait() })
	return s
}

// network is a bridge for one spec's pods. The servers run in pods, network namespaces with
// addresses of their own, because an EndpointSlice may not list loopback addresses.
func network() *netns.Network {
	n, err := netns.NewNetwork(GinkgoT(), "grpcxds")
	Expect(err).NotTo(HaveOccurred())
	return n
}

// startServers starts a pod on n for each name, with a server in it that answers on targetPort
// with the pod's name.
func startServers(n *netns.Network, names ...string) []*netns.Pod {
	var pods []*netns.Pod
	for _, name := range names {
		pod, err := n.AddPod(name)
		Expect(err).NotTo(HaveOccurred())
		s := start(pod.Command(ctx, proxyless, "-mode", "serve", "-name", name, "-addr", fmt.Sprintf(":%d", targetPort)), true)
		Eventually(s.Out, 10*time.Second).Should(gbytes.Say("listening on"))
		pods = append(pods, pod)
	}
	return pods
}

// namespace makes a namespace for one spec.
func namespace(name string) string {
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}

// backend makes a Service whose servicePort goes to targetPort, a Pod object for each server pod
// (without a proxy, so the servers are reached in plain text), and the EndpointSlice that lists
// them: no kube-controller-manager runs to write it. It returns the EndpointSlice.
func backend(ns, name string, servers []*netns.Pod) *discoveryv1.EndpointSlice {
	Expect(k8s.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: portName, Port: servicePort, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP,
		}}},
	})).To(Succeed())
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(targetPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, s := range servers {
		Expect(k8s.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.Name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "proxyless"}}},
		})).To(Succeed())
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{s.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: s.Name},
		})
	}
	Expect(k8s.Create(ctx, slice)).To(Succeed())
	return slice
}

// bootstrap is grpc-go's xDS bootstrap file (gRFC A27, with A65's mTLS channel credentials).
type bootstrap struct {
	XDSServers []xdsServer `json:"xds_servers"`
	Node       struct {
		ID string `json:"id"`
	} `json:"node"`
}

type xdsServer struct {
	ServerURI    string         `json:"server_uri"`
	ChannelCreds []channelCreds `json:"channel_creds"`
}

type channelCreds struct {
	Type   string            `json:"type"`
	Config map[string]string `json:"config"`
}

// startClient runs a client in the pod "client" of ns, which it makes, that calls the service
// service until the spec ends. Its bootstrap names the pod as its node and presents a certificate
// for the pod's ServiceAccount, as the control plane requires.
func startClient(ns, service string) *gexec.Session {
	const pod, sa = "client", "client"
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})).To(Succeed())
	Expect(k8s.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "proxyless"}}},
	})).To(Succeed())

	cert, err := cp.WorkloadCertificate(spiffe.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa})
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "cert.pem"), chain, 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)).To(Succeed())

	_, xdsPort, err := net.SplitHostPort(cp.XDSAddr)
	Expect(err).NotTo(HaveOccurred())
	b := bootstrap{XDSServers: []xdsServer{{
		ServerURI: net.JoinHostPort(framework.LoopbackServerName, xdsPort),
		ChannelCreds: []channelCreds{{Type: "tls", Config: map[string]string{
			"ca_certificate_file": anchorsFile,
			"certificate_file":    filepath.Join(dir, "cert.pem"),
			"private_key_file":    filepath.Join(dir, "key.pem"),
		}}},
	}}}
	b.Node.ID = xdsnames.NodeID(pod, ns)
	data, err := json.Marshal(b)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "bootstrap.json"), data, 0o600)).To(Succeed())

	// The client runs on the host, which reaches the control plane on loopback and the pods
	// through their bridge.
	cmd := exec.Command(proxyless, "-mode", "call", "-interval", "20ms", "-target", "xds:///"+xdsnames.Authority(service, ns, servicePort))
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+filepath.Join(dir, "bootstrap.json"))
	return start(cmd, false)
}

// answers are the names of the servers that answered a client, in order.
func answers(client *gexec.Session) []string {
	var names []string
	for _, line := range strings.Split(string(client.Out.Contents()), "\n") {
		if name, ok := strings.CutPrefix(line, "answer "); ok {
			names = append(names, name)
		}
	}
	return names
}

// expectAnswersFrom waits until the client's latest answers, all after the first skip, come from
// every one of servers and from no other, and returns how many answers it has had.
func expectAnswersFrom(client *gexec.Session, skip int, servers ...string) int {
	var n int
	Eventually(func(g Gomega) {
		got := answers(client)
		n = len(got)
		g.Expect(n-skip).To(BeNumerically(">=", window), "answers so far")
		latest := got[n-window:]
		g.Expect(latest).To(HaveEach(BeElementOf(servers)))
		for _, s := range servers {
			g.Expect(latest).To(ContainElement(s))
		}
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
	return n
}

// rejected is how many responses xDS clients rejected (NACKed), by the control plane's counter.
func rejected() float64 {
	families, err := cp.Metrics.Gather()
	Expect(err).NotTo(HaveOccurred())
	var sum float64
	for _, f := range families {
		if f.GetName() == "skein_xds_rejected_total" {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
