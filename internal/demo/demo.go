// Package demo runs Skein's demo: a real local API server, the control plane as its own process, the
// samples applied with kubectl, and what kubectl then shows. Each feature adds its act here.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/certmanager"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

// Options configure a demo run.
type Options struct {
	// Controller is the path of the skein-controller binary to run.
	Controller string
	// Dir holds the demo's kubeconfig and logs while it runs.
	Dir string
	// Once makes the demo stop by itself after showing everything, instead of waiting for Ctrl-C.
	Once bool
	// Out is where the demo tells what it does.
	Out io.Writer
}

// Run runs the demo until ctx is done (or, with Once, until it has shown everything). It returns an
// error if any step failed.
func Run(ctx context.Context, o Options) (err error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	d := &demo{Options: o, root: root}

	d.say("Starting a real Kubernetes API server (kube-apiserver and etcd from bin/k8s) with Skein's and cert-manager's CRDs")
	cmCRDs, err := certmanager.CRDDir()
	if err != nil {
		return err
	}
	cluster, err := localcluster.Start(localcluster.Options{Dir: o.Dir, CRDDirs: []string{cmCRDs}, Webhooks: true})
	if err != nil {
		return err
	}
	d.cluster = cluster
	defer func() {
		d.say("Stopping the API server")
		err = errors.Join(err, cluster.Stop(), os.Remove(cluster.Kubeconfig))
	}()
	d.printf("    API server: %s\n    kubeconfig: %s\n", cluster.Config.Host, cluster.Kubeconfig)

	if err := cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return err
	}
	// Pods are network namespaces on a bridge of the demo's; they reach the identity service on the
	// bridge's address. Clean-ups of the pods run when the demo ends.
	d.pods = &podsT{log: filepath.Join(o.Dir, "pods.log")}
	defer func() { err = errors.Join(err, d.pods.cleanup()) }()
	identityHost := "127.0.0.1"
	if d.podsUnsupported = netns.Supported(); d.podsUnsupported == nil {
		if err := d.pods.do(func() { d.network, err = netns.NewNetwork(d.pods, "demo") }); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		identityHost = d.network.Gateway.String()
	}
	stopCertManager, err := d.startCertManager(ctx, cluster, "cert-manager.log")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopCertManager()) }()
	if d.identityAddr, err = freeAddr(identityHost); err != nil {
		return err
	}
	if d.xdsAddr, err = freeAddr(identityHost); err != nil {
		return err
	}
	// What acts start (a second cluster) stops after this cluster's control plane, which may
	// be watching it: an API server with open watches is slow to stop.
	defer func() {
		for i := len(d.stops) - 1; i >= 0; i-- {
			err = errors.Join(err, d.stops[i]())
		}
	}()
	stop, err := d.startController(ctx, cluster, d.identityAddr, d.xdsAddr, "controller.log")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()

	err = d.run(ctx,
		d.waitForWebhooks,
		d.applySamples,
		d.waitForMeshConfig,
		d.refuseLoop,
		d.show("meshconfig,trafficsplits,meshstatus", "-A"),
		d.show("clusterissuers,issuers,certificates", "-n", Namespace),
		d.injectedPod,
		d.certifyWorkload,
		d.shortTelemetryWindows,
		d.meshedPods,
		d.externalWorkload,
		d.multicluster,
		d.checkMesh,
		d.telemetry,
	)
	if err != nil || o.Once {
		return err
	}
	kubectl := filepath.Join(cluster.AssetsDir, "kubectl")
	d.say("The mesh is running. Explore it from another terminal, then press Ctrl-C to stop:")
	d.printf("    export KUBECONFIG=%s\n    %s get skein -A\n", cluster.Kubeconfig, kubectl)
	<-ctx.Done()
	return nil
}

// Namespace is the demo control plane's namespace.
const Namespace = "skein-system"

type demo struct {
	Options
	root            string
	cluster         *localcluster.Cluster
	identityAddr    string
	xdsAddr         string
	pods            *podsT
	network         *netns.Network
	podsUnsupported error
	// mesh and caller are meshedPods' pods, and webIP the web Service's ClusterIP, which later acts reuse.
	mesh   *localmesh.Mesh
	caller *localmesh.Pod
	webIP  string
	// stops stop what acts started, in reverse order, when the demo ends.
	stops []func() error
}

// run runs the acts in order and stops at the first that fails.
func (d *demo) run(ctx context.Context, acts ...func(context.Context) error) error {
	for _, act := range acts {
		if err := act(ctx); err != nil {
			d.say("FAILED: " + err.Error())
			return err
		}
	}
	return nil
}

// startCertManager runs cert-manager's own controllers, in this process, against an API server.
func (d *demo) startCertManager(ctx context.Context, cluster *localcluster.Cluster, logName string) (stop func() error, err error) {
	d.say("Starting cert-manager's controllers, logging to " + filepath.Join(d.Dir, logName))
	logFile, err := os.Create(filepath.Join(d.Dir, logName))
	if err != nil {
		return nil, err
	}
	stopControllers, err := certmanager.Start(ctx, certmanager.Options{
		Kubeconfig: cluster.Kubeconfig, ClusterResourceNamespace: Namespace, LogWriter: logFile, LogVerbosity: 2,
	})
	if err != nil {
		return nil, errors.Join(err, logFile.Close())
	}
	return func() error {
		d.say("Stopping cert-manager")
		return errors.Join(stopControllers(), logFile.Close())
	}, nil
}

// startController runs skein-controller against an API server, its log in Dir.
func (d *demo) startController(ctx context.Context, cluster *localcluster.Cluster, identityAddr, xdsAddr, logName string) (stop func() error, err error) {
	d.say("Starting the Skein control plane (" + d.Controller + "), logging to " + filepath.Join(d.Dir, logName))
	logFile, err := os.Create(filepath.Join(d.Dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.Controller, "--kubeconfig", cluster.Kubeconfig, "--namespace", Namespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0",
		"--identity-bind-address="+identityAddr, "--xds-bind-address="+xdsAddr,
		// The API server calls the admission webhooks where envtest registered them.
		"--webhook-host="+cluster.Webhook.Host, fmt.Sprintf("--webhook-port=%d", cluster.Webhook.Port),
		"--webhook-cert-dir="+cluster.Webhook.CertDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Should the demo die without stopping it, the control plane goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", d.Controller, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return func() error {
		d.say("Stopping the control plane")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			err = fmt.Errorf("the control plane did not stop within 15s of SIGTERM: %w", <-exited)
		}
		return errors.Join(err, logFile.Close())
	}, nil
}

func (d *demo) applySamples(ctx context.Context) error {
	d.say("Applying the samples: kubectl apply -k config/samples")
	return d.kubectl(ctx, "apply", "-k", filepath.Join(d.root, "config", "samples"))
}

// waitForWebhooks waits until the control plane serves the admission webhooks: until then the API
// server refuses TrafficSplits, as their webhook fails closed.
func (d *demo) waitForWebhooks(ctx context.Context) error {
	return d.cluster.Webhook.Wait(ctx)
}

// refuseLoop shows the TrafficSplit webhook at work: a split that would send web-canary's traffic
// back to web, which the sample splits towards web-canary, is refused with the loop spelled out.
func (d *demo) refuseLoop(ctx context.Context) error {
	d.say("A TrafficSplit sending web-canary's traffic back to web would make a loop; the webhook refuses it:")
	loop := `{"apiVersion":"mesh.skein.dev/v1alpha1","kind":"TrafficSplit","metadata":{"name":"loop","namespace":"default"},` +
		`"spec":{"service":"web-canary","backends":[{"service":"web","weight":1}]}}`
	_, err := d.cluster.Kubectl(ctx, []byte(loop), "apply", "-f", "-")
	if err == nil {
		return errors.New("the TrafficSplit webhook let a loop of splits through")
	}
	// What kubectl printed on stderr follows its exit status in the error.
	_, msg, _ := strings.Cut(err.Error(), "exit status 1: ")
	d.printf("%s", indent(msg))
	return nil
}

func (d *demo) waitForMeshConfig(ctx context.Context) error {
	d.say("Waiting for the MeshConfig to be Ready")
	return d.kubectl(ctx, "wait", "--for=condition=Ready", "meshconfig/default", "--timeout=120s")
}

func (d *demo) show(what string, flags ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		d.say("kubectl get " + strings.Join(append([]string{what}, flags...), " "))
		return d.kubectl(ctx, append([]string{"get", what}, flags...)...)
	}
}

// kubectl runs the real kubectl against the demo's cluster and shows what it prints.
func (d *demo) kubectl(ctx context.Context, args ...string) error {
	out, err := d.cluster.Kubectl(ctx, nil, args...)
	d.printf("%s", indent(out))
	return err
}

func (d *demo) say(msg string) { d.printf("==> %s\n", msg) }

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.Out, format, args...) }

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
