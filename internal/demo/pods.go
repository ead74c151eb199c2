package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/test/localmesh"
)

// meshedPods runs meshed pods, each a network namespace with proxy-init's rules, the workload and
// skein-proxy certified by the identity service and configured over xDS by the control plane, and
// sends traffic through the sample TrafficSplit: web -> web-stable 90%, web-canary 10%, then 50/50,
// then all to the canary.
func (d *demo) meshedPods(ctx context.Context) error {
	if d.podsUnsupported != nil {
		d.say("Skipping meshed pods: " + d.podsUnsupported.Error())
		return nil
	}
	d.say("Meshed pods, each a network namespace with proxy-init's iptables rules, the workload and skein-proxy, configured over xDS (log: " + d.pods.log + ")")
	bundle := &corev1.ConfigMap{}
	if err := d.cluster.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return err
	}
	var m *localmesh.Mesh
	var stable, canary, caller *localmesh.Pod
	var webIP string
	err := d.pods.do(func() {
		var err error
		if m, err = localmesh.New(ctx, d.pods, localmesh.Options{
			Client: d.cluster.Client, Network: d.network, IdentityAddr: d.identityAddr,
			IdentityServerName: inject.ServiceHost(inject.IdentityService, Namespace), TrustAnchors: bundle.Data[meshv1.TrustBundleKey],
			XDSAddrs: []string{d.xdsAddr}, XDSServerName: inject.ServiceHost(inject.XDSService, Namespace),
		}); err != nil {
			d.pods.Fatal(err)
		}
		for _, p := range []struct {
			pod  **localmesh.Pod
			name string
		}{{&stable, "web-stable-1"}, {&canary, "web-canary-1"}} {
			if *p.pod, err = m.AddPod(p.name, "default", "web", nil); err != nil {
				d.pods.Fatal(err)
			}
		}
		if caller, err = m.AddPod("client", "default", "client", nil); err != nil {
			d.pods.Fatal(err)
		}
		for _, svc := range []struct {
			name string
			pods []*localmesh.Pod
		}{{"web-stable", []*localmesh.Pod{stable}}, {"web-canary", []*localmesh.Pod{canary}}, {"web", []*localmesh.Pod{stable, canary}}} {
			ip, err := m.Serve(svc.name, "default", svc.pods...)
			if err != nil {
				d.pods.Fatal(err)
			}
			if svc.name == "web" {
				webIP = ip
			}
		}
	})
	if err != nil {
		return err
	}
	d.mesh, d.caller = m, caller
	for _, p := range []*localmesh.Pod{stable, canary, caller} {
		d.printf("    pod %-13s %-12s %s\n", p.Name, p.IP, p.ID)
	}
	if err := d.show("services,endpointslices", "-n", "default")(ctx); err != nil {
		return err
	}
	d.say("The client calls web (ClusterIP " + webIP + "); its proxy routes by what the control plane sent it")
	for _, call := range []struct{ mode, port string }{{"http1", "80"}, {"h2", "80"}, {"grpc", "80"}, {"tcp", "9000"}} {
		out, err := waitAnswer(func() (string, error) {
			return caller.Run(0, "-mode", call.mode, "-addr", webIP+":"+call.port, "-body", "hello-from-client")
		})
		if err != nil {
			return fmt.Errorf("%s from client to web: %v: %s", call.mode, err, out)
		}
		d.printf("    client -> web:%s over %-5s answered: %s\n", call.port, call.mode, out)
	}
	d.printf("    (the server sees the caller's SPIFFE ID in Skein-Client-Id; the bytes between the pods are mTLS)\n")

	// The sample TrafficSplit's 90/10 canary, then a shift to 50/50, then blue/green: all to the canary.
	for _, step := range []struct{ stable, canary int }{{90, 10}, {50, 50}, {0, 100}} {
		if step.stable != 90 {
			patch := fmt.Sprintf(`{"spec":{"backends":[{"service":"web-stable","weight":%d},{"service":"web-canary","weight":%d}]}}`, step.stable, step.canary)
			d.say("kubectl patch trafficsplit web --type=merge -p '" + patch + "'")
			if err := d.kubectl(ctx, "patch", "trafficsplit", "web", "-n", "default", "--type=merge", "-p", patch); err != nil {
				return err
			}
			time.Sleep(time.Second) // the proxies have it within milliseconds; a second is plenty
		}
		d.say(fmt.Sprintf("Two seconds of requests to web at web-stable %d, web-canary %d", step.stable, step.canary))
		out, err := caller.Run(0, "-mode", "load", "-addr", webIP+":80", "-host", "web.default.svc.cluster.local:80", "-duration", "2s", "-workers", "4")
		if err != nil {
			return fmt.Errorf("load from client to web: %v: %s", err, out)
		}
		d.printf("%s\n", indent(out))
		if err := d.show("trafficsplit", "web", "-n", "default", "-o", "wide")(ctx); err != nil {
			return err
		}
	}
	d.caller, d.webIP = caller, webIP
	d.say("What the client's proxy counted (its /metrics on " + caller.Admin + ")")
	for _, l := range strings.Split(localmesh.Get(caller.Admin+"/metrics"), "\n") {
		if strings.HasPrefix(l, "xds_") || strings.HasPrefix(l, "identity_cert_expiration") {
			d.printf("    %s\n", l)
		}
	}
	return nil
}

// waitAnswer retries a first call for a few seconds: the client's proxy may not have the Services
// that were just made.
func waitAnswer(call func() (string, error)) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := call()
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podsT is what the pod harness needs of its caller (netns.T), for the demo: clean-ups run when the
// demo ends, logs go to a file, and a fatal error ends the step that raised it.
type podsT struct {
	log      string
	mu       sync.Mutex
	cleanups []func()
	failed   []string
}

type fatal struct{ msg string }

func (t *podsT) Helper()          {}
func (t *podsT) Cleanup(f func()) { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *podsT) Logf(format string, args ...any) {
	f, err := os.OpenFile(t.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}
func (t *podsT) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.failed = append(t.failed, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}
func (t *podsT) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (t *podsT) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }

// do runs f, turning a Fatal inside it into an error.
func (t *podsT) do(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ft, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(ft.msg)
		}
	}()
	f()
	return nil
}

// cleanup runs the clean-ups, last first, and reports what failed.
func (t *podsT) cleanup() error {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	if len(t.failed) > 0 {
		return errors.New(strings.Join(t.failed, "; "))
	}
	return nil
}
