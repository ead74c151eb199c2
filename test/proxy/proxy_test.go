// Package proxy_test runs meshed pods for real: each pod is a network namespace with proxy-init's
// iptables rules, an application and skein-proxy, which gets its certificate from the control
// plane's identity service (over the real API server and cert-manager).
package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

// proxyUID is the user the proxies run as, exempt from the outbound redirect.
const proxyUID = 2102

// mesh is a control plane with meshed pods on one network.
type mesh struct {
	t         *testing.T
	ctx       context.Context
	k8s       client.Client
	cp        *framework.ControlPlane
	network   *netns.Network
	anchors   string
	dir       string // world-readable: the proxies run as proxyUID
	proxy     string
	app       string
	proxyInit string
}

func newMesh(t *testing.T) *mesh {
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	network, err := netns.NewNetwork(t, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	stopCM, err := framework.StartCertManager(cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopCM() })
	cp, err := framework.StartControlPlane(cluster.Config, network.Gateway.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Stop() })

	k8s := cluster.Client
	if err := k8s.Create(ctx, &meshv1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the MeshConfig to be Ready", func() bool {
		mc := &meshv1.MeshConfig{}
		return k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc) == nil &&
			meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady)
	})
	bundle := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "skein-mesh-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	return &mesh{
		t: t, ctx: ctx, k8s: k8s, cp: cp, network: network, anchors: bundle.Data[meshv1.TrustBundleKey], dir: dir,
		proxy:     netns.Build(t, "github.com/skeinmesh/skein/proxy/cmd/skein-proxy"),
		app:       netns.Build(t, "github.com/skeinmesh/skein/test/proxy/testdata/app"),
		proxyInit: netns.BuildProxyInit(t),
	}
}

// pod is a meshed pod: its application serves HTTP on 8080 and TCP on 9000.
type pod struct {
	*netns.Pod
	id         spiffe.ID
	admin      string
	app, proxy func() *exec.Cmd
	appCmd     *exec.Cmd
	proxyCmd   *exec.Cmd
}

// addPod runs a pod as ServiceAccount name in namespace shop, with destinations for its proxy.
func (m *mesh) addPod(name string, dests []map[string]any) *pod {
	return m.addPodAs(name, name, dests)
}

func (m *mesh) addPodAs(name, serviceAccount string, dests []map[string]any) *pod {
	t := m.t
	np, err := m.network.AddPod(name)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: serviceAccount}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}}
	if err := m.k8s.Create(m.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)}}
	if err := m.k8s.SubResource("token").Create(m.ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	tokenPath := m.file(name+".token", []byte(tr.Status.Token))
	destPath := m.file(name+".destinations.json", mustJSON(t, map[string]any{"services": dests}))

	anchors := m.file("anchors.pem", []byte(m.anchors))
	p := &pod{Pod: np, id: id, admin: fmt.Sprintf("http://%s:4191", np.IP),
		app: func() *exec.Cmd {
			return np.Command(m.ctx, m.app, "-mode", "serve", "-addr", ":8080", "-tcp-addr", ":9000")
		},
		proxy: func() *exec.Cmd {
			return np.CommandAs(m.ctx, proxyUID, m.proxy,
				"--identity-addr", m.cp.IdentityAddr, "--identity-server-name", framework.IdentityServerName,
				"--identity", id.String(), "--token-path", tokenPath, "--trust-anchors", "@"+anchors,
				"--destinations-file", destPath, "--log-level", "debug")
		},
	}
	p.appCmd = m.start(p.app(), name+" app")
	p.proxyCmd = m.start(p.proxy(), name+" proxy")
	if err := np.ApplyProxyInit(m.ctx, m.proxyInit, iptables.Config{ProxyUID: proxyUID}); err != nil {
		t.Fatal(err)
	}
	m.waitReady(p)
	return p
}

func (m *mesh) waitReady(p *pod) {
	waitFor(m.t, 30*time.Second, p.Name+"'s proxy to be ready", func() bool { return httpGet(p.admin+"/ready") == "ready\n" })
}

// restart restarts a pod as a rolling update does: the proxy is told to stop (SIGTERM) and drains,
// the application is restarted, then the proxy starts again.
func (m *mesh) restart(p *pod) {
	t := m.t
	p.proxyCmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 30*time.Second, p.Name+"'s proxy to drain and exit", func() bool { return p.proxyCmd.ProcessState != nil })
	p.appCmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, p.Name+"'s app to exit", func() bool { return p.appCmd.ProcessState != nil })
	p.appCmd = m.start(p.app(), p.Name+" app")
	p.proxyCmd = m.start(p.proxy(), p.Name+" proxy")
	m.waitReady(p)
}

func (m *mesh) file(name string, data []byte) string {
	path := filepath.Join(m.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		m.t.Fatal(err)
	}
	return path
}

// start runs a long-lived process of a pod, its output in the test log on failure. Its
// ProcessState is set once it has exited.
func (m *mesh) start(cmd *exec.Cmd, name string) *exec.Cmd {
	out := &prefixWriter{t: m.t, prefix: name + ": "}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return cmd
}

// run runs the app as a client in a pod, as uid, and returns what it printed.
func (m *mesh) run(p *pod, uid int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(m.ctx, 20*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if uid == 0 {
		cmd = p.Command(ctx, m.app, args...)
	} else {
		cmd = p.CommandAs(ctx, uid, m.app, args...)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestMeshedPodsTalkOverMTLS(t *testing.T) {
	m := newMesh(t)
	capture := startCapture(t, m.network.Bridge)
	server := m.addPod("server", nil)
	b := server.IP.String()
	client := m.addPod("client", []map[string]any{{
		"authority": "server.shop.svc.cluster.local:8080",
		"endpoints": []map[string]any{{"addr": b + ":8080", "identity": server.id.String()}, {"addr": b + ":9000", "identity": server.id.String()}},
	}})

	const marker = "skein-plaintext-marker-7f3a"
	tests := []struct {
		mode, addr, want string
	}{
		{"http1", b + ":8080", fmt.Sprintf("200 HTTP/1.1 /http1 %s %s", client.id, marker)},
		{"h2", b + ":8080", fmt.Sprintf("200 HTTP/2.0 /h2 %s %s", client.id, marker)},
		{"grpc", b + ":8080", fmt.Sprintf("200 grpc-status=0 %q", marker)},
		{"tcp", b + ":9000", "echo: " + marker},
	}
	for _, tt := range tests {
		got, err := m.run(client, 0, "-mode", tt.mode, "-addr", tt.addr, "-body", marker)
		if err != nil || got != tt.want {
			t.Errorf("%s client in pod A: %q, %v; want %q", tt.mode, got, err, tt.want)
		}
	}

	t.Run("the server's proxy saw the client's identity over mTLS", func(t *testing.T) {
		metrics := httpGet(server.admin + "/metrics")
		for _, want := range []string{
			`request_total{authority="` + b + `:8080",direction="inbound"} 3`,
			// The three HTTP requests (HTTP/1, HTTP/2, gRPC) share one multiplexed HTTP/2
			// connection between the proxies; the TCP stream has its own.
			`tcp_open_total{direction="inbound",tls="true"} 2`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("the server proxy's metrics lack %s:\n%s", want, grepLines(metrics, "tcp_open_total", "request_total"))
			}
		}
	})

	t.Run("a plain client is refused by the server's inbound port", func(t *testing.T) {
		// As the proxy's user, the client's own proxy lets the call go out unproxied.
		got, err := m.run(client, proxyUID, "-mode", "http1", "-addr", b+":8080", "-body", "plain")
		if err == nil || strings.HasPrefix(got, "200") {
			t.Errorf("a plain client got %q", got)
		}
	})

	t.Run("the bytes between the pods are TLS", func(t *testing.T) {
		if capture.count() == 0 {
			t.Fatal("nothing was captured on the bridge")
		}
		if capture.seen([]byte(marker)) {
			t.Error("the marker crossed the network in plain text")
		}
		// The capture does see plain text when there is some: the admin port is not meshed.
		httpGet(server.admin + "/live?" + marker + "-control")
		waitFor(t, 5*time.Second, "the control marker to be captured", func() bool { return capture.seen([]byte(marker + "-control")) })
	})
}

func grepLines(text string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestRollingRestartUnderLoadLosesNothing restarts, one after the other, the two pods behind a
// service while a client sends requests to it without pause.
func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	m := newMesh(t)
	s1 := m.addPodAs("server-1", "server", nil)
	s2 := m.addPodAs("server-2", "server", nil)
	const authority = "server.shop.svc.cluster.local:8080"
	client := m.addPod("client", []map[string]any{{
		"authority": authority,
		"endpoints": []map[string]any{
			{"addr": s1.IP.String() + ":8080", "identity": s1.id.String()},
			{"addr": s2.IP.String() + ":8080", "identity": s2.id.String()},
		},
	}})

	done := make(chan string, 1)
	loadEnds := time.Now().Add(12 * time.Second)
	go func() {
		out, err := m.run(client, 0, "-mode", "load", "-addr", s1.IP.String()+":8080", "-host", authority, "-duration", "12s", "-workers", "4")
		if err != nil {
			out += " " + err.Error()
		}
		done <- out
	}()
	time.Sleep(2 * time.Second)
	m.restart(s1)
	m.restart(s2)
	if time.Now().After(loadEnds) {
		t.Fatal("the restarts outlasted the load, which then proves nothing")
	}
	out := <-done
	var ok, failed int
	if _, err := fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed); err != nil {
		t.Fatalf("load said %q: %v", out, err)
	}
	t.Logf("during the rolling restart: %d requests succeeded, %d failed", ok, failed)
	if failed != 0 || ok < 100 {
		t.Errorf("load: %s", out)
	}
}

func httpGet(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(b), nil
}
