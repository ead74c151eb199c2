package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/expansion"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

// externalWorkload brings a "VM" (a network namespace outside the cluster's pods) into the mesh as
// an ExternalWorkload, set up from what `skein external-workload bootstrap` writes, and has the
// client pod call it through a Service that selects it.
func (d *demo) externalWorkload(ctx context.Context) error {
	if d.mesh == nil {
		return nil // no pods on this machine, so no VM either
	}
	d.say("Mesh expansion: a VM (a network namespace of its own) joins as ExternalWorkload billing-vm-1")
	k8s := d.cluster.Client
	var host *netns.Pod
	var err error
	if err := d.pods.do(func() {
		if host, err = d.mesh.AddHost("billing-vm-1"); err != nil {
			d.pods.Fatal(err)
		}
	}); err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "billing"}}); err != nil {
		return err
	}
	// The sample ExternalWorkload is this VM, but for its address.
	ew := &meshv1.ExternalWorkload{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "billing-vm-1"}, ew); err != nil {
		return fmt.Errorf("reading the sample ExternalWorkload: %w", err)
	}
	patch := `{"spec":{"workloadIPs":[{"ip":"` + host.IP.String() + `"}]}}`
	d.say("kubectl patch externalworkload billing-vm-1 --type=merge -p '" + patch + "'")
	if err := d.kubectl(ctx, "patch", "externalworkload", "billing-vm-1", "-n", "default", "--type=merge", "-p", patch); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "billing"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "billing"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if err := k8s.Create(ctx, svc); err != nil {
		return err
	}

	// The VM's files are read by its proxy's user, which cannot enter the demo's own directory.
	dir, err := os.MkdirTemp("", "skein-demo-vm-")
	if err != nil {
		return err
	}
	d.pods.Cleanup(func() { os.RemoveAll(dir) })
	d.say("skein external-workload bootstrap billing-vm-1 --out " + dir + " --identity-addr " + d.identityAddr + " --xds-addr " + d.xdsAddr)
	b, err := expansion.Bootstrap(ctx, k8s, expansion.Options{Name: ew.Name, Namespace: ew.Namespace, ControlPlaneNamespace: Namespace,
		IdentityAddr: d.identityAddr, XDSAddr: d.xdsAddr, ConfigDir: dir, TokenTTL: 24 * time.Hour})
	if err != nil {
		return err
	}
	if err := b.Write(dir); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(dir, expansion.TokenFile), localmesh.ProxyUID, 0); err != nil {
		return err
	}
	d.printf("%s", indent("wrote "+expansion.EnvFile+":\n"+b[expansion.EnvFile]))
	env := strings.Fields(b[expansion.EnvFile]) // NAME=value lines, without spaces
	var vm *localmesh.Pod
	if err := d.pods.do(func() {
		if vm, err = d.mesh.RunExternal(host, env); err != nil {
			d.pods.Fatal(err)
		}
	}); err != nil {
		return err
	}
	if err := d.kubectl(ctx, "wait", "--for=condition=Ready", "externalworkload/billing-vm-1", "-n", "default", "--timeout=60s"); err != nil {
		return err
	}
	if err := d.show("externalworkloads", "-n", "default", "-o", "wide")(ctx); err != nil {
		return err
	}
	if err := d.show("endpointslices", "-n", "default", "-l", meshv1.ExternalWorkloadLabel+"=billing-vm-1")(ctx); err != nil {
		return err
	}
	out, err := waitAnswer(func() (string, error) {
		return d.caller.Run(0, "-mode", "http1", "-addr", svc.Spec.ClusterIP+":80", "-body", "hello-vm")
	})
	if err != nil {
		return fmt.Errorf("client to billing on the VM: %v: %s", err, out)
	}
	d.printf("    client -> billing:80 (the VM %s) answered: %s\n", vm.IP, out)
	return nil
}
