// Package multicluster_test proves multicluster end to end. Two real API servers are two clusters,
// west and east, each with cert-manager's controllers and its own control plane; east brings west's
// trust anchor, so both meshes trust each other. East's operator deploys the gateway, which runs
// here from that Deployment's own pod template; west links to east with exactly what `skein
// multicluster link` printed, applied with kubectl. Pods and the gateway are network namespaces on
// one network: cutting the gateway's link is the partition between the clusters.
package multicluster_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/check"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

const (
	ns          = "shop"
	remote      = "east"
	gatewayID   = "spiffe://cluster.local/ns/" + framework.SystemNamespace + "/sa/" + meshv1.GatewayName
	clientID    = "spiffe://cluster.local/ns/shop/sa/client"
	linkTimeout = 30 * time.Second
)

// side is one cluster: its API server, control plane and pods.
type side struct {
	*framework.Cluster
	cp   *framework.ControlPlane
	mesh *localmesh.Mesh
}

func TestMulticluster(t *testing.T) {
	ctx := context.Background()
	network, err := netns.NewNetwork(t, "mc")
	if err != nil {
		t.Fatal(err)
	}
	host := network.Gateway.String()

	t.Log("west: a cluster with a mesh whose trust anchor cert-manager made")
	west := startSide(t, net.JoinHostPort(host, "0"), net.JoinHostPort(host, "0"))
	anchors, err := framework.ApplyMeshConfig(ctx, west.Cluster)
	if err != nil {
		t.Fatal(err)
	}

	t.Log("east: a cluster that brings west's trust anchor and enables multicluster")
	// East's control plane listens on the Services' own ports, where the gateway's pod template
	// says they are; its pods find them through their /etc/hosts.
	east := startSide(t, net.JoinHostPort(host, strconv.Itoa(inject.IdentityPort)), net.JoinHostPort(host, strconv.Itoa(inject.XDSPort)))
	if err := localmesh.ShareTrustAnchor(ctx, west.Client, east.Client, framework.SystemNamespace); err != nil {
		t.Fatal(err)
	}
	eastAnchors, err := framework.ApplyMeshConfigYAML(ctx, east.Cluster, []byte(localmesh.SharedAnchorMeshConfig))
	if err != nil {
		t.Fatal(err)
	}
	if string(eastAnchors) != string(anchors) {
		t.Fatalf("east's trust bundle is not west's:\n%s\nwant\n%s", eastAnchors, anchors)
	}
	west.waitIssuer(t)
	east.waitIssuer(t)
	west.startMesh(t, ctx, network, string(anchors), nil)
	east.startMesh(t, ctx, network, string(anchors), map[string]string{framework.IdentityServerName: host, framework.XDSServerName: host})

	t.Log("east: web serves, exported; private serves, not exported")
	web, err := east.mesh.AddPod("web-1", ns, "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "private"} {
		if _, err := east.mesh.Serve(name, ns, web); err != nil {
			t.Fatal(err)
		}
	}
	setExported(t, east.Client, "web", true)

	t.Log("east: the gateway runs from the Deployment east's operator made")
	gateway := east.runGateway(t, ctx)

	t.Log("west: a client pod, then the Link and credentials `skein multicluster link` prints for east, applied with kubectl")
	caller, err := west.mesh.AddPod("client", ns, "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	skein := netns.Build(t, "github.com/skeinmesh/skein/cmd/skein")
	out, err := exec.Command(skein, "multicluster", "link", "--cluster-name", remote, "--kubeconfig", east.Kubeconfig,
		"--gateway-address", gateway.IP.String()).Output()
	if err != nil {
		t.Fatalf("skein multicluster link: %v\n%s", err, out)
	}
	linked := time.Now()
	if msg, err := west.Kubectl(ctx, out, "apply", "-f", "-"); err != nil {
		t.Fatalf("applying the link: %v\n%s", err, msg)
	}
	webIP := waitMirror(t, west.Client, "web-"+remote, true)
	t.Logf("web-%s mirrored %s after the Link was applied", remote, time.Since(linked).Round(time.Millisecond))
	waitEndpointsReady(t, west.Client, "web-"+remote, true)
	if err := west.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "private-" + remote}, &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("private, which east does not export, is mirrored: %v", err)
	}

	waitLinkAlive(t, west.Client, true)
	if r := linkCheck(t, west.Cluster); r.Status != check.OK {
		t.Errorf("skein check says of the Link: %+v", r)
	}

	t.Log("west's client reaches east's web through east's gateway, over mTLS at each hop")
	for _, mode := range []string{"http1", "h2"} {
		answer := framework.Retry(t, func() (string, error) {
			return caller.Run(0, "-mode", mode, "-addr", webIP+":80", "-body", "from-west")
		})
		if !strings.HasPrefix(answer, "200 ") || !strings.Contains(answer, gatewayID) || !strings.Contains(answer, "from-west") {
			t.Errorf("%s to web-%s answered %q, want 200 naming the gateway's identity %s", mode, remote, answer, gatewayID)
		}
		if !strings.Contains(answer, "forwarded-for="+clientID) {
			t.Errorf("%s to web-%s answered %q, want the caller's identity %s forwarded by the gateway", mode, remote, answer, clientID)
		}
	}
	if answer := framework.Retry(t, func() (string, error) { return caller.Run(0, "-mode", "grpc", "-addr", webIP+":80", "-body", "g") }); !strings.Contains(answer, "grpc-status=0") {
		t.Errorf("gRPC to web-%s answered %q", remote, answer)
	}
	if answer := framework.Retry(t, func() (string, error) {
		return caller.Run(0, "-mode", "tcp", "-addr", webIP+":9000", "-body", "opaque")
	}); !strings.Contains(answer, "echo: opaque") {
		t.Errorf("TCP to web-%s answered %q", remote, answer)
	}
	if m := localmesh.Get(gateway.Admin + "/metrics"); !strings.Contains(m, `client_id="`+clientID+`"`) {
		t.Errorf("the gateway's metrics name no request from %s:\n%s", clientID, grepLines(m, "request_total"))
	}

	t.Log("exporting, unexporting and deleting a Service in east is mirrored in west")
	api, err := east.mesh.AddPod("api-1", ns, "api", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := east.mesh.Serve("api", ns, api); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		what   string
		change func()
		want   bool
	}{
		{"exported", func() { setExported(t, east.Client, "api", true) }, true},
		{"unexported", func() { setExported(t, east.Client, "api", false) }, false},
		{"exported again", func() { setExported(t, east.Client, "api", true) }, true},
		{"deleted", func() {
			if err := east.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}}); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		start := time.Now()
		step.change()
		waitMirror(t, west.Client, "api-"+remote, step.want)
		t.Logf("api %s in east: mirrored in west after %s", step.what, time.Since(start).Round(time.Millisecond))
	}

	t.Log("a TrafficSplit in west shares web between a local backend and east's")
	local, err := west.mesh.AddPod("web-local-1", ns, "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := west.mesh.Serve("web-local", ns, local); err != nil {
		t.Fatal(err)
	}
	apexIP, err := west.mesh.Serve("web", ns)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, west.Client, &meshv1.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: meshv1.TrafficSplitSpec{
		Service: "web", Backends: []meshv1.TrafficSplitBackend{{Service: "web-local", Weight: 50}, {Service: "web-" + remote, Weight: 50}},
	}})
	load := func() (ok, failed int, by map[string]int) {
		return runLoad(t, caller, apexIP, "web.shop.svc.cluster.local:80", "3s")
	}
	waitFor(t, linkTimeout, "both backends to serve web", func() bool {
		_, failed, by := load()
		return failed == 0 && by["web-local-1"] > 0 && by["web-1"] > 0
	})

	t.Log("the network between the clusters is cut: the mirrored endpoints are withdrawn and the local backend serves everything")
	link := &meshv1.Link{}
	if err := west.Client.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: remote}, link); err != nil {
		t.Fatal(err)
	}
	probe := link.Spec.ProbeSpec
	if err := gateway.SetLink(false); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitEndpointsReady(t, west.Client, "web-"+remote, false)
	withdrawn := time.Since(cut)
	// failureThreshold probes in a row must fail: each takes up to a period plus its timeout.
	allowed := time.Duration(probe.FailureThreshold)*probe.Period.Duration + probe.Timeout.Duration + 5*time.Second
	t.Logf("withdrawn %s after the cut (failureThreshold %d, period %s, timeout %s)", withdrawn.Round(time.Millisecond), probe.FailureThreshold, probe.Period.Duration, probe.Timeout.Duration)
	if withdrawn > allowed {
		t.Errorf("the mirrored endpoints were withdrawn %s after the cut, later than the probes allow (%s)", withdrawn, allowed)
	}
	waitLinkAlive(t, west.Client, false)
	if r := linkCheck(t, west.Cluster); r.Status != check.Fail {
		t.Errorf("skein check says of the Link with its gateway cut off: %+v", r)
	}
	// The withdrawal reaches the client's proxy over xDS: once twenty requests in a row go to the
	// local backend (a 1 in a million chance while east still had half), it has.
	waitFor(t, 20*time.Second, "the client's proxy to stop sending to east", func() bool {
		out, err := caller.Run(0, "-mode", "load", "-addr", apexIP+":80", "-host", "web.shop.svc.cluster.local:80", "-requests", "20", "-workers", "1")
		return err == nil && strings.Contains(out, "ok=20 failed=0") && strings.Contains(out, "web-local-1=20")
	})
	if ok, failed, by := load(); failed != 0 || ok == 0 || by["web-1"] != 0 {
		t.Errorf("after the withdrawal: ok=%d failed=%d served by %v, want every request served by web-local-1", ok, failed, by)
	}

	t.Log("the network comes back, and so do east's endpoints")
	if err := gateway.SetLink(true); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	waitEndpointsReady(t, west.Client, "web-"+remote, true)
	t.Logf("restored %s after the link came back", time.Since(restored).Round(time.Millisecond))
	waitLinkAlive(t, west.Client, true)
	waitFor(t, linkTimeout, "east to serve again", func() bool {
		_, failed, by := load()
		return failed == 0 && by["web-local-1"] > 0 && by["web-1"] > 0
	})

	t.Log("kubectl shows the Link")
	if out, err := west.Kubectl(ctx, nil, "get", "links", "-n", framework.SystemNamespace); err != nil || !strings.Contains(out, remote) || !strings.Contains(out, "true") {
		t.Errorf("kubectl get links: %v\n%s", err, out)
	} else {
		t.Logf("kubectl get links:\n%s", out)
	}

	t.Log("deleting the Link removes every mirror")
	if err := west.Client.Delete(ctx, link); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, west.Client, "web-"+remote, false)
	waitFor(t, linkTimeout, "the Link to be gone", func() bool {
		return apierrors.IsNotFound(west.Client.Get(ctx, client.ObjectKeyFromObject(link), &meshv1.Link{}))
	})
	slices := &discoveryv1.EndpointSliceList{}
	if err := west.Client.List(ctx, slices, client.HasLabels{meshv1.MirroredFromLabel}); err != nil {
		t.Fatal(err)
	}
	if len(slices.Items) != 0 {
		t.Errorf("%d mirrored EndpointSlices remain after the Link was deleted", len(slices.Items))
	}
}

// startSide starts a cluster with cert-manager and a control plane listening at the given addresses.
func startSide(t *testing.T, identityAddr, xdsAddr string) *side {
	t.Helper()
	c, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	stopCM, err := framework.StartCertManager(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopCM() })
	cp, err := framework.StartControlPlaneWith(c.Config, framework.ControlPlaneOptions{IdentityAddr: identityAddr, XDSAddr: xdsAddr, Webhook: c.Webhook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Stop() })
	return &side{Cluster: c, cp: cp}
}

// waitIssuer waits until the side's identity service has loaded the issuer cert-manager issued,
// which it does a moment after the MeshConfig turns Ready.
func (s *side) waitIssuer(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "the identity service to load its issuer", func() bool { return s.cp.Issuer() != nil })
}

// startMesh readies the side to run pods, once its mesh has a trust bundle.
func (s *side) startMesh(t *testing.T, ctx context.Context, network *netns.Network, anchors string, hosts map[string]string) {
	t.Helper()
	m, err := localmesh.New(ctx, t, localmesh.Options{
		Client: s.Client, Network: network, TrustAnchors: anchors, Hosts: hosts,
		IdentityAddr: s.cp.IdentityAddr, IdentityServerName: framework.IdentityServerName,
		XDSAddrs: []string{s.cp.XDSAddr}, XDSServerName: framework.XDSServerName,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mesh = m
}

// runGateway runs a pod of the gateway Deployment the operator makes.
func (s *side) runGateway(t *testing.T, ctx context.Context) *localmesh.Pod {
	t.Helper()
	mc := &meshv1.MeshConfig{}
	if err := s.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		t.Fatal(err)
	}
	p, err := s.mesh.RunDeploymentPod(framework.SystemNamespace, meshv1.GatewayName, s.mesh.LocalImages(mc.Spec.Proxy.Image, mc.Spec.Proxy.InitImage, "none"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func setExported(t *testing.T, c client.Client, name string, exported bool) {
	t.Helper()
	svc := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		t.Fatal(err)
	}
	before := svc.DeepCopy()
	if svc.Labels == nil {
		svc.Labels = map[string]string{}
	}
	if exported {
		svc.Labels[meshv1.ExportedLabel] = "true"
	} else {
		delete(svc.Labels, meshv1.ExportedLabel)
	}
	if err := c.Patch(context.Background(), svc, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// waitMirror waits until the mirrored Service exists (and has a ClusterIP, returned) or is gone.
func waitMirror(t *testing.T, c client.Client, name string, present bool) string {
	t.Helper()
	var ip string
	waitFor(t, linkTimeout, fmt.Sprintf("Service %s present=%v", name, present), func() bool {
		svc := &corev1.Service{}
		err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc)
		if !present {
			return apierrors.IsNotFound(err)
		}
		ip = svc.Spec.ClusterIP
		return err == nil && svc.Labels[meshv1.MirroredFromLabel] == remote && ip != ""
	})
	return ip
}

// waitEndpointsReady waits until the mirrored Service's endpoints are all ready, or none is.
func waitEndpointsReady(t *testing.T, c client.Client, service string, ready bool) {
	t.Helper()
	waitFor(t, linkTimeout, fmt.Sprintf("%s's endpoints ready=%v", service, ready), func() bool {
		list := &discoveryv1.EndpointSliceList{}
		if err := c.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
			return false
		}
		n, readyN := 0, 0
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				n++
				if meshv1.IsReady(ep.Conditions) {
					readyN++
				}
			}
		}
		if ready {
			return n > 0 && readyN == n
		}
		return readyN == 0
	})
}

func waitLinkAlive(t *testing.T, c client.Client, alive bool) {
	t.Helper()
	waitFor(t, linkTimeout, fmt.Sprintf("the Link's gateway alive=%v", alive), func() bool {
		l := &meshv1.Link{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: framework.SystemNamespace, Name: remote}, l); err != nil {
			return false
		}
		return l.Status.Gateway != nil && l.Status.Gateway.Alive == alive &&
			meta.IsStatusConditionTrue(l.Status.Conditions, meshv1.ConditionReady) == alive
	})
}

// runLoad sends requests for a while and counts them by outcome and by the pod that served them.
func runLoad(t *testing.T, c *localmesh.Pod, ip, authority, duration string) (ok, failed int, by map[string]int) {
	t.Helper()
	out, err := c.Run(0, "-mode", "load", "-addr", ip+":80", "-host", authority, "-duration", duration, "-workers", "4")
	if err != nil {
		return 0, -1, nil
	}
	fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed)
	by = map[string]int{}
	_, served, _ := strings.Cut(out, "served-by ")
	for _, f := range strings.Fields(served) {
		if k, v, found := strings.Cut(f, "="); found {
			n, _ := strconv.Atoi(v)
			by[k] = n
		}
	}
	return ok, failed, by
}

// linkCheck is what skein check says of the Link to east.
func linkCheck(t *testing.T, c *framework.Cluster) check.Result {
	t.Helper()
	env, err := check.NewEnv(c.Config, framework.SystemNamespace)
	if err != nil {
		t.Fatal(err)
	}
	name := "Link " + framework.SystemNamespace + "/" + remote + " to cluster " + remote
	for _, r := range check.Run(context.Background(), env, check.Installed()) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("skein check has no result named %q", name)
	return check.Result{}
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
