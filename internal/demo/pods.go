package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/test/localmesh"
)

// meshedPods runs two meshed pods, each a network namespace with proxy-init's rules, the workload and
// skein-proxy certified by the identity service, and sends traffic from one to the other.
func (d *demo) meshedPods(ctx context.Context) error {
	if d.podsUnsupported != nil {
		d.say("Skipping meshed pods: " + d.podsUnsupported.Error())
		return nil
	}
	d.say("Two meshed pods, each a network namespace with proxy-init's iptables rules, the workload and skein-proxy (log: " + d.pods.log + ")")
	bundle := &corev1.ConfigMap{}
	if err := d.cluster.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return err
	}
	var m *localmesh.Mesh
	var web, client *localmesh.Pod
	err := d.pods.do(func() {
		var err error
		if m, err = localmesh.New(ctx, d.pods, localmesh.Options{
			Client: d.cluster.Client, Network: d.network, IdentityAddr: d.identityAddr,
			IdentityServerName: "skein-identity." + Namespace + ".svc", TrustAnchors: bundle.Data[meshv1.TrustBundleKey],
		}); err != nil {
			d.pods.Fatal(err)
		}
		if web, err = m.AddPod("web", "default", "web", nil); err != nil {
			d.pods.Fatal(err)
		}
		addr, _ := netip.AddrFromSlice(web.IP.To4())
		if client, err = m.AddPod("client", "default", "client", []destinations.Service{{
			Authority: "web.default.svc.cluster.local:8080",
			Endpoints: []destinations.Endpoint{{Addr: netip.AddrPortFrom(addr, 8080), Identity: web.ID.String()}, {Addr: netip.AddrPortFrom(addr, 9000), Identity: web.ID.String()}},
		}}); err != nil {
			d.pods.Fatal(err)
		}
	})
	if err != nil {
		return err
	}
	d.printf("    pod web    %-12s %s\n    pod client %-12s %s\n", web.IP, web.ID, client.IP, client.ID)
	for _, call := range []struct{ mode, port string }{{"http1", "8080"}, {"h2", "8080"}, {"grpc", "8080"}, {"tcp", "9000"}} {
		out, err := client.Run(0, "-mode", call.mode, "-addr", web.IP.String()+":"+call.port, "-body", "hello-from-client")
		if err != nil {
			return fmt.Errorf("%s from client to web: %v: %s", call.mode, err, out)
		}
		d.printf("    client -> web:%s over %-5s answered: %s\n", call.port, call.mode, out)
	}
	d.printf("    (web's workload sees the caller's SPIFFE ID in Skein-Client-Id; the bytes between the pods are mTLS)\n")
	d.say("What web's proxy counted (its /metrics on " + web.Admin + ")")
	for _, l := range strings.Split(localmesh.Get(web.Admin+"/metrics"), "\n") {
		if strings.HasPrefix(l, "request_total") || strings.HasPrefix(l, "tcp_open_total") || strings.HasPrefix(l, "identity_cert_expiration") {
			d.printf("    %s\n", l)
		}
	}
	return nil
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
