package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/certmanager"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/internal/multicluster"
	"github.com/skeinmesh/skein/test/localmesh"
)

// multicluster starts a second cluster, east, with its own API server, cert-manager and control
// plane, runs its gateway from the Deployment its operator makes, links the demo cluster to it
// with what `skein multicluster link` prints, calls east's web from the demo's client through
// the gateway, and cuts the network to the gateway to show its endpoints withdrawn and restored.
func (d *demo) multicluster(ctx context.Context) error {
	if d.mesh == nil {
		return nil // no pods on this machine, so no gateway either
	}
	d.say("Multicluster: a second cluster, east (its own API server, cert-manager and control plane), sharing this one's trust anchor")
	cmCRDs, err := certmanager.CRDDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(d.Dir, "east")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	east, err := localcluster.Start(localcluster.Options{Dir: dir, CRDDirs: []string{cmCRDs}, Webhooks: true})
	if err != nil {
		return err
	}
	d.stops = append(d.stops, func() error { d.say("Stopping east's API server"); return east.Stop() })
	d.printf("    east's API server: %s\n    kubeconfig: %s\n", east.Config.Host, east.Kubeconfig)
	if err := east.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return err
	}
	// East's mesh uses this cluster's trust anchor, so that the two trust each other.
	if err := localmesh.ShareTrustAnchor(ctx, d.cluster.Client, east.Client, Namespace); err != nil {
		return err
	}
	stopCertManager, err := d.startCertManager(ctx, east, "east-cert-manager.log")
	if err != nil {
		return err
	}
	d.stops = append(d.stops, stopCertManager)
	// East's control plane listens on its Services' own ports, where the gateway's pod template
	// says they are; the gateway finds them through its /etc/hosts.
	host := d.network.Gateway.String()
	identityAddr, xdsAddr := net.JoinHostPort(host, strconv.Itoa(inject.IdentityPort)), net.JoinHostPort(host, strconv.Itoa(inject.XDSPort))
	stopController, err := d.startController(ctx, east, identityAddr, xdsAddr, "east-controller.log")
	if err != nil {
		return err
	}
	d.stops = append(d.stops, stopController)
	if err := east.Webhook.Wait(ctx); err != nil {
		return err
	}
	d.say("east: kubectl apply the MeshConfig (trustAnchor.secretName: shared-anchor, multicluster.enabled: true)")
	if _, err := east.Kubectl(ctx, []byte(localmesh.SharedAnchorMeshConfig), "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := east.Kubectl(ctx, nil, "wait", "--for=condition=Ready", "meshconfig/default", "--timeout=120s"); err != nil {
		return err
	}
	bundle := &corev1.ConfigMap{}
	if err := east.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return err
	}

	var eastMesh *localmesh.Mesh
	var gateway *localmesh.Pod
	if err := d.pods.do(func() {
		var err error
		if eastMesh, err = localmesh.New(ctx, d.pods, localmesh.Options{
			Client: east.Client, Network: d.network, TrustAnchors: bundle.Data[meshv1.TrustBundleKey],
			IdentityAddr: identityAddr, IdentityServerName: inject.ServiceHost(inject.IdentityService, Namespace),
			XDSAddrs: []string{xdsAddr}, XDSServerName: inject.ServiceHost(inject.XDSService, Namespace),
			Hosts: map[string]string{inject.ServiceHost(inject.IdentityService, Namespace): host, inject.ServiceHost(inject.XDSService, Namespace): host},
		}); err != nil {
			d.pods.Fatal(err)
		}
		web, err := eastMesh.AddPod("web-east-1", "default", "web", nil)
		if err != nil {
			d.pods.Fatal(err)
		}
		if _, err := eastMesh.Serve("web", "default", web); err != nil {
			d.pods.Fatal(err)
		}
		if gateway, err = d.runGateway(ctx, east, eastMesh); err != nil {
			d.pods.Fatal(err)
		}
	}); err != nil {
		return err
	}
	d.say("east: kubectl label service web " + meshv1.ExportedLabel + "=true")
	if _, err := east.Kubectl(ctx, nil, "label", "service", "web", "-n", "default", meshv1.ExportedLabel+"=true"); err != nil {
		return err
	}
	d.say("east: the gateway the operator deployed, running at " + gateway.IP.String())
	out, err := east.Kubectl(ctx, nil, "get", "deployment,service", "-n", Namespace, meshv1.GatewayName)
	d.printf("%s", indent(out))
	if err != nil {
		return err
	}

	// The sample Link is east's, but for what only east knows: `skein multicluster link` fills it in.
	d.say("skein multicluster link --cluster-name east --namespace default --gateway-address " + gateway.IP.String() + " (against east) | kubectl apply -f - (here)")
	res, err := multicluster.Link(ctx, east.Client, east.Config, multicluster.LinkOptions{
		ClusterName: "east", Namespace: "default", ControlPlaneNamespace: Namespace, GatewayAddress: gateway.IP.String(), TokenTTL: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("skein multicluster link: %w", err)
	}
	link := res.Manifest
	d.printf("%s", indent(redactToken(string(link))))
	applied := time.Now()
	if _, err := d.cluster.Kubectl(ctx, link, "apply", "-f", "-"); err != nil {
		return err
	}
	mirror := &corev1.Service{}
	if err := waitUntil(ctx, 30*time.Second, "web-east to be mirrored", func() bool {
		return d.cluster.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web-east"}, mirror) == nil && mirror.Spec.ClusterIP != ""
	}); err != nil {
		return err
	}
	d.printf("    web-east mirrored %s after the Link was applied\n", time.Since(applied).Round(time.Millisecond))
	if err := d.waitLinkAlive(ctx, true); err != nil {
		return err
	}
	if err := d.show("links", "-n", "default")(ctx); err != nil {
		return err
	}
	if err := d.show("services,endpointslices", "-n", "default", "-l", meshv1.MirroredFromLabel+"=east")(ctx); err != nil {
		return err
	}
	call := func() (string, error) {
		return d.caller.Run(0, "-mode", "http1", "-addr", mirror.Spec.ClusterIP+":80", "-body", "hello-east")
	}
	answer, err := waitAnswer(call)
	if err != nil {
		return fmt.Errorf("client to web-east: %v: %s", err, answer)
	}
	d.printf("    client -> web-east:80 (through east's gateway) answered: %s\n", answer)

	d.say("The network to east's gateway is cut (its link down): the Link's probes fail and the mirrored endpoints are withdrawn")
	if err := gateway.SetLink(false); err != nil {
		return err
	}
	cut := time.Now()
	if err := d.waitLinkAlive(ctx, false); err != nil {
		return err
	}
	d.printf("    withdrawn %s after the cut\n", time.Since(cut).Round(time.Millisecond))
	if err := d.show("links", "-n", "default")(ctx); err != nil {
		return err
	}
	if err := gateway.SetLink(true); err != nil {
		return err
	}
	restored := time.Now()
	if err := d.waitLinkAlive(ctx, true); err != nil {
		return err
	}
	d.printf("    restored %s after the link came back\n", time.Since(restored).Round(time.Millisecond))
	answer, err = waitAnswer(call)
	if err != nil {
		return fmt.Errorf("client to web-east after the restore: %v: %s", err, answer)
	}
	d.printf("    client -> web-east:80 answered again: %s\n", answer)
	return nil
}

// runGateway runs a pod of the gateway Deployment that the cluster's operator made.
func (d *demo) runGateway(ctx context.Context, c *localcluster.Cluster, m *localmesh.Mesh) (*localmesh.Pod, error) {
	mc := &meshv1.MeshConfig{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		return nil, err
	}
	return m.RunDeploymentPod(Namespace, meshv1.GatewayName, m.LocalImages(mc.Spec.Proxy.Image, mc.Spec.Proxy.InitImage, "none"))
}

// waitLinkAlive waits until the Link to east says its gateway is alive, or is not.
func (d *demo) waitLinkAlive(ctx context.Context, alive bool) error {
	return waitUntil(ctx, time.Minute, fmt.Sprintf("the Link's gateway alive=%v", alive), func() bool {
		l := &meshv1.Link{}
		return d.cluster.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "east"}, l) == nil &&
			l.Status.Gateway != nil && l.Status.Gateway.Alive == alive
	})
}

func waitUntil(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + d.String() + " waiting for " + what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// redactToken hides the bearer token in printed credentials.
func redactToken(s string) string {
	return tokenLine.ReplaceAllString(s, "${1}<redacted>")
}

var tokenLine = regexp.MustCompile(`(?m)^(\s*(token|kubeconfig):\s*).+$`)
