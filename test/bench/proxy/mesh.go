package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/identityclient"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

// The pods' ports. The backend serves the same response on appPort, which is meshed, and on
// directPort, which proxy-init skips in both pods, so that one backend serves all three paths.
const (
	proxyUID   = iptables.DefaultProxyUID // skein-proxy and HAProxy run as this user
	appPort    = 8080                     // meshed: reached through both skein-proxies
	directPort = 8081                     // skipped: the client reaches the backend with no proxy
	refPort    = 8443                     // HAProxy B's mTLS port, skipped by proxy-init
	refLocal   = 4180                     // HAProxy A's plain-HTTP port on the client pod's loopback
	namespace  = "shop"
)

// mesh is the control plane and the two pods, with everything that runs in them.
type mesh struct {
	e       *env
	ctx     context.Context // the long-lived processes' context: they end in cleanup
	network *netns.Network
	cp      *framework.ControlPlane
	k8s     client.Client
	anchors []byte
	dir     string // world-readable: the proxies run as proxyUID and read their files here

	stopControlPlane func()

	proxyBin, proxyInitBin, haproxyBin, nginxBin, tasksetBin string
	// skeinEnv is added to skein-proxy's environment (GOMAXPROCS=1 is always there).
	skeinEnv []string
	// pprof runs skein-proxy with --pprof, for -profile.
	pprof bool
	// pinLoad is the CPU list the load generator is pinned to, when pinning.
	pinLoad string

	client, server *pod
	backend        *proc // nginx's master process
}

// pod is a network namespace with its workload identity and the processes the benchmark measures.
type pod struct {
	*netns.Pod
	id        spiffe.ID
	tokenPath string
	skein     *proc // skein-proxy
	haproxy   *proc // the reference proxy
}

// proc is a long-lived process in a pod, its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it exits
	err  error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// setupMesh starts the API server, cert-manager, the control plane with its identity service, and
// a network for the pods; it builds skein-proxy and proxy-init.
// With logsDir, the processes' logs are copied there at the end.
// With proxyBin, that skein-proxy binary is run instead of one built from this tree.
func setupMesh(e *env, skeinEnv []string, logsDir, proxyBin string) *mesh {
	m := &mesh{e: e, ctx: context.Background(), skeinEnv: skeinEnv}
	if err := netns.Supported(); err != nil {
		e.Fatal(err)
	}
	var err error
	for name, dst := range map[string]*string{"haproxy": &m.haproxyBin, "nginx": &m.nginxBin, "taskset": &m.tasksetBin} {
		if *dst, err = lookPath(name); err != nil {
			e.Fatalf("%v: test/bench/proxy.sh installs it (apt-get install %s)", err, name)
		}
	}
	dir, err := os.MkdirTemp("", "skein-bench-proxy-")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { os.RemoveAll(dir) })
	if logsDir != "" {
		// Registered before any process starts, so it runs after they have all been killed.
		e.Cleanup(func() { copyLogs(e, dir, logsDir) })
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		e.Fatal(err)
	}
	m.dir = dir

	if proxyBin == "" {
		e.step("Building skein-proxy and proxy-init")
		m.proxyBin = netns.Build(e, "github.com/skeinmesh/skein/proxy/cmd/skein-proxy")
	} else {
		// The proxy runs as proxyUID, which must be able to execute it.
		e.step("Building proxy-init; skein-proxy is %s", proxyBin)
		m.proxyBin = m.file("skein-proxy", mustRead(e, proxyBin))
		if err := os.Chmod(m.proxyBin, 0o755); err != nil {
			e.Fatal(err)
		}
	}
	m.proxyInitBin = netns.BuildProxyInit(e)

	e.step("Starting the API server, cert-manager and the control plane")
	m.network, err = netns.NewNetwork(e, "bench")
	if err != nil {
		e.Fatal(err)
	}
	cluster, err := framework.StartCluster()
	if err != nil {
		e.Fatal(err)
	}
	var stopCluster, stopCM, stopCP sync.Once
	// The cluster's directory (its kubeconfig and cert-manager's log) is a temporary one that
	// stopping it leaves behind.
	e.Cleanup(func() { os.RemoveAll(filepath.Dir(cluster.Kubeconfig)) })
	e.Cleanup(func() { stopCluster.Do(func() { cluster.Stop() }) })
	stopCertManager, err := framework.StartCertManager(cluster)
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { stopCM.Do(func() { stopCertManager() }) })
	m.cp, err = framework.StartControlPlane(cluster, m.network.Gateway.String())
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { stopCP.Do(func() { m.cp.Stop() }) })
	m.stopControlPlane = func() {
		stopCP.Do(func() { m.cp.Stop() })
		stopCM.Do(func() { stopCertManager() })
		stopCluster.Do(func() { cluster.Stop() })
	}

	m.k8s = cluster.Client
	ctx := m.ctx
	if err := m.k8s.Create(ctx, &meshv1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName}}); err != nil {
		e.Fatal(err)
	}
	waitFor(e, 2*time.Minute, "the MeshConfig to be Ready", func() bool {
		mc := &meshv1.MeshConfig{}
		return m.k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc) == nil &&
			meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady)
	})
	bundle := &corev1.ConfigMap{}
	if err := m.k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		e.Fatal(err)
	}
	m.anchors = []byte(bundle.Data[meshv1.TrustBundleKey])
	m.file("anchors.pem", m.anchors)
	if err := m.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		e.Fatal(err)
	}
	return m
}

// addPod makes a pod whose workload runs as ServiceAccount name, with a token for the identity
// service.
func (m *mesh) addPod(name string) *pod {
	np, err := m.network.AddPod(name)
	if err != nil {
		m.e.Fatal(err)
	}
	id := spiffe.ID{TrustDomain: "cluster.local", Namespace: namespace, ServiceAccount: name}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: id.Namespace, Name: id.ServiceAccount}}
	if err := m.k8s.Create(m.ctx, sa); err != nil {
		m.e.Fatal(err)
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600)}}
	if err := m.k8s.SubResource("token").Create(m.ctx, sa, tr); err != nil {
		m.e.Fatal(err)
	}
	return &pod{Pod: np, id: id, tokenPath: m.file(name+".token", []byte(tr.Status.Token))}
}

// startSkein installs proxy-init's rules in p, runs skein-proxy there on one core's worth of Go
// (GOMAXPROCS=1) and waits until the proxy has its certificate.
func (m *mesh) startSkein(p *pod, dests []map[string]any) {
	destPath := m.file(p.Name+".destinations.json", mustJSON(map[string]any{"services": dests}))
	cmd := p.CommandAs(m.ctx, proxyUID, m.proxyBin,
		"--identity-addr", m.cp.IdentityAddr, "--identity-server-name", framework.IdentityServerName,
		"--identity", p.id.String(), "--token-path", p.tokenPath, "--trust-anchors", "@"+filepath.Join(m.dir, "anchors.pem"),
		"--destinations-file", destPath, "--log-level", "info")
	if m.pprof {
		cmd.Args = append(cmd.Args, "--pprof")
	}
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), m.skeinEnv...)
	// The rules before the proxy, as in a pod: the replies on the proxy's first connections must not
	// meet a redirect installed after those connections opened.
	err := p.ApplyProxyInit(m.ctx, m.proxyInitBin, iptables.Config{
		ProxyUID:          proxyUID,
		SkipInboundPorts:  []int{directPort, refPort},
		SkipOutboundPorts: []int{directPort},
	})
	if err != nil {
		m.e.Fatal(err)
	}
	p.skein = m.start(p.Name+"-skein-proxy", cmd)
	admin := fmt.Sprintf("http://%s:%d/ready", p.IP, iptables.AdminPort)
	m.waitRunning(30*time.Second, p.Name+"'s skein-proxy to be ready", p.skein, func() bool { return localmesh.Get(admin) == "ready\n" })
}

// start runs a long-lived process, killed in cleanup.
func (m *mesh) start(name string, cmd *exec.Cmd) *proc {
	logPath := filepath.Join(m.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		m.e.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		m.e.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	m.e.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			m.e.Errorf("%s (pid %d) did not exit after SIGKILL", name, p.pid())
		}
	})
	return p
}

// waitRunning waits for cond while p runs; if p exits, the run fails with the end of its log.
func (m *mesh) waitRunning(d time.Duration, what string, p *proc, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if p.exited() {
			m.e.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, p.err, what, tail(p.log, 20))
		}
		if time.Now().After(deadline) {
			m.e.Fatalf("timed out after %s waiting for %s; %s's log ends:\n%s", d, what, p.name, tail(p.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// certify gets a workload certificate for p's identity from the identity service, as a proxy
// does, and writes it for HAProxy: the chain and then the private key, in one PEM file.
func (m *mesh) certify(p *pod, name string) string {
	ic, err := identityclient.New(identityclient.Config{
		Addr: m.cp.IdentityAddr, ServerName: framework.IdentityServerName, TrustAnchors: m.anchors,
		Identity: p.id.String(), TokenPath: p.tokenPath,
	})
	if err != nil {
		m.e.Fatal(err)
	}
	defer ic.Close()
	var cert *tls.Certificate
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		cert, err = ic.Certify(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			m.e.Fatalf("certifying %s for HAProxy: %v", p.id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		m.e.Fatal(err)
	}
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)
	return m.file(name, out)
}

// pin sets the CPU affinity of pid, every thread of it, and of its children, to cpus.
func (m *mesh) pin(pid int, cpus string) {
	for _, p := range append([]int{pid}, children(pid)...) {
		if out, err := exec.Command(m.tasksetBin, "-a", "-p", "-c", cpus, strconv.Itoa(p)).CombinedOutput(); err != nil {
			m.e.Fatalf("taskset -a -p -c %s %d: %v: %s", cpus, p, err, out)
		}
	}
}

// copyLogs copies the *.log files of dir into to.
func copyLogs(e *env, dir, to string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if err := os.MkdirAll(to, 0o755); err != nil {
		e.Errorf("keeping the logs: %v", err)
		return
	}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err == nil {
			err = os.WriteFile(filepath.Join(to, filepath.Base(l)), b, 0o644)
		}
		if err != nil {
			e.Errorf("keeping the logs: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "bench-proxy: the processes' logs are in %s\n", to)
}

func mustRead(e *env, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		e.Fatal(err)
	}
	return b
}

// file writes a file every user can read into the run's directory.
func (m *mesh) file(name string, data []byte) string {
	path := filepath.Join(m.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		m.e.Fatal(err)
	}
	return path
}

func waitFor(e *env, d time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			e.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// tail is the last n lines of a log file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// lookPath also looks in the sbin directories, which a non-login shell's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}
