// Package localmesh runs meshed pods on this machine: each pod a network namespace (see test/netns)
// with proxy-init's iptables rules, the test workload and skein-proxy, which gets its certificate
// from a running identity service. The proxy tests and `skein demo` both use it.
package localmesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/test/netns"
)

// ProxyUID is the user the proxies run as, which proxy-init exempts from the outbound redirect.
const ProxyUID = 2102

// Options say where the control plane is.
type Options struct {
	// Client reaches the API server, for ServiceAccounts and their tokens.
	Client client.Client
	// Network is where the pods live; the identity service must listen on its gateway.
	Network *netns.Network
	// IdentityAddr and IdentityServerName reach the identity service.
	IdentityAddr, IdentityServerName string
	// TrustAnchors is the trust bundle, PEM.
	TrustAnchors string
	// TrustDomain of the identities; cluster.local when empty.
	TrustDomain string
	// XDSAddrs, when set, are the control-plane replicas the proxies fetch their destinations from
	// (checking XDSServerName), and AddPod creates a Pod object for each pod, as its node.
	XDSAddrs      []string
	XDSServerName string
	// Hosts are the names, and their addresses, that pods run by RunPod resolve (their /etc/hosts),
	// standing in for the cluster's DNS: the control plane's Services, for example.
	Hosts map[string]string
}

// Mesh runs pods.
type Mesh struct {
	Options
	t   netns.T
	ctx context.Context
	// dir is world-readable: the proxies run as ProxyUID.
	dir                      string
	proxy, workload, proxyIn string
}

// New builds skein-proxy, proxy-init and the workload.
func New(ctx context.Context, t netns.T, o Options) (*Mesh, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = identity.DefaultTrustDomain
	}
	dir, err := os.MkdirTemp("", "skein-mesh-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	return &Mesh{
		Options: o, t: t, ctx: ctx, dir: dir,
		proxy:    netns.Build(t, "github.com/skeinmesh/skein/proxy/cmd/skein-proxy"),
		workload: netns.Build(t, "github.com/skeinmesh/skein/test/workload"),
		proxyIn:  netns.BuildProxyInit(t),
	}, nil
}

// Pod is a meshed pod: its workload serves HTTP on 8080 and TCP on 9000.
type Pod struct {
	*netns.Pod
	// ID is the pod's workload identity.
	ID spiffe.ID
	// Admin is the URL of its proxy's admin port.
	Admin string

	mesh                *Mesh
	newWorkload         func() *exec.Cmd
	newProxy            func() *exec.Cmd
	workload, proxy     *exec.Cmd
	workloadEx, proxyEx chan struct{}
	// run is set for a pod started by RunPod.
	run *podRun
}

// AddPod runs a pod as a ServiceAccount. Its proxy knows the destinations given or, with
// XDSAddrs, those the control plane sends it.
func (m *Mesh) AddPod(name, namespace, serviceAccount string, dests []destinations.Service) (*Pod, error) {
	return m.AddPodServing(name, namespace, serviceAccount, dests)
}

// AddPodServing is AddPod with more flags for the workload's server (see test/workload: -latencies,
// -fail-every).
func (m *Mesh) AddPodServing(name, namespace, serviceAccount string, dests []destinations.Service, serveArgs ...string) (*Pod, error) {
	return m.addPod(name, namespace, serviceAccount, dests, false, serveArgs)
}

// AddGateway runs a multicluster gateway, skein-proxy --mode=gateway on port 4143, in a pod of its
// own without iptables rules, as a ServiceAccount. dests are the services it knows, exported or not.
func (m *Mesh) AddGateway(name, namespace, serviceAccount string, dests []destinations.Service) (*Pod, error) {
	return m.addPod(name, namespace, serviceAccount, dests, true, nil)
}

func (m *Mesh) addPod(name, namespace, serviceAccount string, dests []destinations.Service, gateway bool, serveArgs []string) (*Pod, error) {
	np, err := m.Network.AddPod(name)
	if err != nil {
		return nil, err
	}
	id := spiffe.ID{TrustDomain: m.TrustDomain, Namespace: namespace, ServiceAccount: serviceAccount}
	token, err := m.token(id)
	if err != nil {
		return nil, err
	}
	tokenPath, anchors := m.file(name+".token", token), m.file("anchors.pem", []byte(m.TrustAnchors))
	args := []string{"--identity-addr", m.IdentityAddr, "--identity-server-name", m.IdentityServerName,
		"--identity", id.String(), "--token-path", tokenPath, "--trust-anchors", "@" + anchors, "--log-level", "debug"}
	if gateway {
		args = append(args, "--mode", "gateway")
	}
	if len(m.XDSAddrs) > 0 {
		if err := m.createPod(name, namespace, serviceAccount, np.IP.String()); err != nil {
			return nil, err
		}
		args = append(args, "--xds-addr", strings.Join(m.XDSAddrs, ","), "--xds-server-name", m.XDSServerName,
			"--node-id", xdsnames.NodeID(name, namespace))
	} else {
		doc, err := json.Marshal(map[string]any{"services": dests})
		if err != nil {
			return nil, err
		}
		args = append(args, "--destinations-file", m.file(name+".destinations.json", doc))
	}
	p := &Pod{Pod: np, ID: id, Admin: fmt.Sprintf("http://%s:4191", np.IP), mesh: m,
		newWorkload: func() *exec.Cmd {
			cmd := np.Command(m.ctx, m.workload, append([]string{"-mode", "serve", "-addr", ":8080", "-tcp-addr", ":9000"}, serveArgs...)...)
			cmd.Env = append(os.Environ(), "POD_NAME="+name)
			return cmd
		},
		newProxy: func() *exec.Cmd { return np.CommandAs(m.ctx, ProxyUID, m.proxy, args...) },
	}
	// The rules go in first, as a pod's init container applies them before its containers start:
	// applied later, they would take the replies on the proxy's first connections (to the identity
	// service and the control plane) for new inbound connections and redirect them to the inbound
	// port, which resets them at the server and leaves the proxy waiting on a dead connection.
	if !gateway {
		if err := np.ApplyProxyInit(m.ctx, m.proxyIn, iptables.Config{ProxyUID: ProxyUID}); err != nil {
			return nil, err
		}
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, p.WaitReady()
}

// createPod records a running meshed pod in the API server, as the kubelet would, so that the
// control plane knows its identity and lets its proxy fetch configuration as its node.
func (m *Mesh) createPod(name, namespace, serviceAccount, ip string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{ServiceAccountName: serviceAccount, Containers: []corev1.Container{
			{Name: "app", Image: "skein-workload"}, {Name: meshv1.ProxyContainerName, Image: "skein-proxy"},
		}},
	}
	if err := m.Client.Create(m.ctx, pod); err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", namespace, name, err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	return m.Client.Status().Update(m.ctx, pod)
}

// Serve makes a Service, port 80 to the pods' HTTP port 8080 and 9000 to their TCP echo, and its
// EndpointSlice listing pods, as the EndpointSlice controller would (none runs here). It returns the
// Service's ClusterIP.
func (m *Mesh) Serve(name, namespace string, pods ...*Pod) (string, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
			{Name: "tcp", Port: 9000, TargetPort: intstr.FromInt32(9000)},
		}},
	}
	if err := m.Client.Create(m.ctx, svc); err != nil {
		return "", fmt.Errorf("creating service %s/%s: %w", namespace, name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}, {Name: ptr.To("tcp"), Port: ptr.To[int32](9000)}},
	}
	if err := m.Client.Create(m.ctx, slice); err != nil {
		return "", err
	}
	return svc.Spec.ClusterIP, m.SetEndpoints(name, namespace, pods, nil)
}

// SetEndpoints writes the Service's EndpointSlice: ready pods, and terminating pods that still
// serve (a graceful removal in progress).
func (m *Mesh) SetEndpoints(service, namespace string, ready, terminating []*Pod) error {
	slice := &discoveryv1.EndpointSlice{}
	if err := m.Client.Get(m.ctx, client.ObjectKey{Namespace: namespace, Name: service}, slice); err != nil {
		return err
	}
	slice.Endpoints = nil
	for _, group := range []struct {
		pods []*Pod
		cond discoveryv1.EndpointConditions
	}{
		{ready, discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}},
		{terminating, discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
	} {
		for _, p := range group.pods {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{p.IP.String()}, Conditions: group.cond,
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.ID.Namespace, Name: p.Name},
			})
		}
	}
	return m.Client.Update(m.ctx, slice)
}

// token gets a token for the identity's ServiceAccount, made if missing, as the kubelet projects it.
func (m *Mesh) token(id spiffe.ID) ([]byte, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: id.Namespace}}
	if err := m.Client.Create(m.ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}}
	if err := m.Client.Create(m.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)}}
	if err := m.Client.SubResource("token").Create(m.ctx, sa, tr); err != nil {
		return nil, fmt.Errorf("requesting a token for %s: %w", id, err)
	}
	return []byte(tr.Status.Token), nil
}

func (m *Mesh) file(name string, data []byte) string {
	path := filepath.Join(m.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		m.t.Fatal(err)
	}
	return path
}

// start starts the workload and the proxy.
func (p *Pod) start() error {
	var err error
	if p.workload, p.workloadEx, err = p.mesh.start(p.newWorkload(), p.Name+" workload"); err != nil {
		return err
	}
	p.proxy, p.proxyEx, err = p.mesh.start(p.newProxy(), p.Name+" proxy")
	return err
}

// WaitReady waits for the pod's proxy to have its certificate (and, over xDS, its first
// destinations). Under a loaded machine a proxy has now and then taken over 20 s; on a timeout the
// error carries the proxy's last /ready answer, which says what it was waiting for.
func (p *Pod) WaitReady() error {
	var last string
	err := waitFor(time.Minute, p.Name+"'s proxy to be ready", func() bool {
		last = Get(p.Admin + "/ready")
		return last == "ready\n"
	})
	if err != nil {
		select {
		case <-p.proxyEx:
			return fmt.Errorf("%w: the proxy exited", err)
		default:
		}
		return fmt.Errorf("%w: its /ready said %q", err, strings.TrimSpace(last))
	}
	return nil
}

// Restart restarts the pod as a rolling update does: the proxy is told to stop (SIGTERM) and
// drains, the workload is restarted, then the proxy starts again.
func (p *Pod) Restart() error {
	if err := p.TerminateProxy(); err != nil {
		return err
	}
	p.workload.Process.Signal(syscall.SIGTERM)
	if err := wait(p.workloadEx, 10*time.Second, p.Name+"'s workload to exit"); err != nil {
		return err
	}
	if err := p.start(); err != nil {
		return err
	}
	return p.WaitReady()
}

// TerminateProxy tells the pod's proxy to stop (SIGTERM), as the kubelet does, and waits for it to
// drain and exit.
func (p *Pod) TerminateProxy() error {
	p.proxy.Process.Signal(syscall.SIGTERM)
	return wait(p.proxyEx, 30*time.Second, p.Name+"'s proxy to drain and exit")
}

// StopProxy kills the pod's proxy, as when its pod vanishes, and waits for it to exit.
func (p *Pod) StopProxy() error {
	if err := p.proxy.Process.Kill(); err != nil {
		return err
	}
	return wait(p.proxyEx, 10*time.Second, p.Name+"'s proxy to exit")
}

// Run runs the workload as a client in the pod, as uid (0 for root), and returns what it printed.
func (p *Pod) Run(uid int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(p.mesh.ctx, time.Minute)
	defer cancel()
	cmd := p.Command(ctx, p.mesh.workload, args...)
	if uid != 0 {
		cmd = p.CommandAs(ctx, uid, p.mesh.workload, args...)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// start runs a long-lived process, its output logged (and copied to also, if given); the channel
// closes when it exits.
func (m *Mesh) start(cmd *exec.Cmd, name string, also ...io.Writer) (*exec.Cmd, chan struct{}, error) {
	out := io.MultiWriter(append([]io.Writer{&logWriter{t: m.t, prefix: name + ": "}}, also...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return cmd, exited, nil
}

// Get fetches a URL and returns its body, or "" on any error.
func Get(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func wait(ch chan struct{}, d time.Duration, what string) error {
	select {
	case <-ch:
		return nil
	case <-time.After(d):
		return errors.New("timed out waiting for " + what)
	}
}

func waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

type logWriter struct {
	t      netns.T
	prefix string
}

func (w *logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Logf("%s%s", w.prefix, line)
	}
	return len(b), nil
}
