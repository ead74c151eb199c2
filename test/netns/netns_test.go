package netns_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/proxy/iptables"
	"github.com/skeinmesh/skein/test/netns"
)

const (
	proxyUID       = 2102
	nettoolPackage = "github.com/skeinmesh/skein/test/netns/testdata/nettool"
	asRoot         = -1
)

// TestProxyInit runs proxy-init's rules in two pods, A the client and B the server, and follows
// connections through stand-in proxies that report each hop.
func TestProxyInit(t *testing.T) {
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	proxyInit := netns.BuildProxyInit(t)
	nettool := tool(netns.Build(t, nettoolPackage))
	network, err := netns.NewNetwork(t, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	a, err := network.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := network.AddPod("b")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	addr := func(p *netns.Pod, port int) string { return net.JoinHostPort(p.IP.String(), fmt.Sprint(port)) }
	app := func(tag, local string) string { return fmt.Sprintf("app=%s local=%s\n", tag, local) }
	proxy := func(tag, orig string) string { return fmt.Sprintf("proxy=%s orig=%s\n", tag, orig) }
	const ping = "ping\n"

	nettool.start(t, b.Command(ctx, string(nettool), "serve", "-tag", "b", ":8080", ":9090"))
	nettool.start(t, b.Command(ctx, string(nettool), "serve", "-tag", "b-admin", fmt.Sprintf(":%d", iptables.AdminPort)))
	nettool.start(t, a.Command(ctx, string(nettool), "serve", "-tag", "a", ":7070"))

	t.Run("pods reach each other by IP", func(t *testing.T) {
		nettool.expect(t, a, asRoot, addr(b, 8080), app("b", addr(b, 8080))+ping)
	})

	// A's outbound proxy runs as the proxy user, like skein-proxy's container.
	nettool.start(t, a.CommandAs(ctx, proxyUID, string(nettool), "proxy", "-tag", "a-out", fmt.Sprintf(":%d", iptables.DefaultOutboundPort)))
	outboundOnly := iptables.Config{ProxyUID: proxyUID, SkipOutboundPorts: []int{9090}}
	// Twice: the init container may run again when a pod restarts.
	for range 2 {
		if err := a.ApplyProxyInit(ctx, proxyInit, outboundOnly); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("applying twice leaves one copy", func(t *testing.T) {
		saved := natTable(t, a)
		for _, rule := range []string{
			"-A OUTPUT -p tcp -j SKEIN_OUTBOUND",
			"-A PREROUTING -p tcp -j SKEIN_INBOUND",
			"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
		} {
			if n := strings.Count(saved, rule+"\n"); n != 1 {
				t.Errorf("%d copies of %q in A's nat table, want 1:\n%s", n, rule, saved)
			}
		}
	})
	t.Run("outbound goes through the proxy, which sees the original destination", func(t *testing.T) {
		// The proxy forwarding to B at all shows that its own connection was not redirected.
		nettool.expect(t, a, asRoot, addr(b, 8080), proxy("a-out", addr(b, 8080))+app("b", addr(b, 8080))+ping)
	})
	t.Run("an address nobody has is redirected too", func(t *testing.T) {
		// As a Service's virtual IP would be: there is only the proxy to answer.
		vip := net.IPv4(network.Subnet.IP[0], network.Subnet.IP[1], network.Subnet.IP[2], 250).String() + ":80"
		out := nettool.dial(t, a, asRoot, vip)
		if first, _, _ := strings.Cut(out, "\n"); first+"\n" != proxy("a-out", vip) {
			t.Errorf("dialling %s from A got %q, want the proxy's report of it first", vip, out)
		}
	})
	t.Run("the proxy user's connections are not redirected", func(t *testing.T) {
		nettool.expect(t, a, proxyUID, addr(b, 8080), app("b", addr(b, 8080))+ping)
	})
	t.Run("a skipped outbound port bypasses the proxy", func(t *testing.T) {
		nettool.expect(t, a, asRoot, addr(b, 9090), app("b", addr(b, 9090))+ping)
	})
	t.Run("loopback and the pod's own address bypass the proxy", func(t *testing.T) {
		nettool.expect(t, a, asRoot, "127.0.0.1:7070", app("a", "127.0.0.1:7070")+ping)
		nettool.expect(t, a, asRoot, addr(a, 7070), app("a", addr(a, 7070))+ping)
	})

	// B's inbound proxy forwards to the application on localhost, as skein-proxy does.
	nettool.start(t, b.CommandAs(ctx, proxyUID, string(nettool), "proxy", "-tag", "b-in", "-to-localhost", fmt.Sprintf(":%d", iptables.DefaultInboundPort)))
	if err := b.ApplyProxyInit(ctx, proxyInit, iptables.Config{ProxyUID: proxyUID, SkipInboundPorts: []int{9090}}); err != nil {
		t.Fatal(err)
	}

	t.Run("inbound goes through the proxy, which sees the original destination", func(t *testing.T) {
		nettool.expect(t, a, proxyUID, addr(b, 8080), proxy("b-in", addr(b, 8080))+app("b", "127.0.0.1:8080")+ping)
	})
	t.Run("a meshed connection crosses both proxies", func(t *testing.T) {
		nettool.expect(t, a, asRoot, addr(b, 8080), proxy("a-out", addr(b, 8080))+proxy("b-in", addr(b, 8080))+app("b", "127.0.0.1:8080")+ping)
	})
	t.Run("a skipped inbound port reaches the application", func(t *testing.T) {
		nettool.expect(t, a, asRoot, addr(b, 9090), app("b", addr(b, 9090))+ping)
	})
	t.Run("the proxy's admin port is never redirected", func(t *testing.T) {
		nettool.expect(t, a, proxyUID, addr(b, iptables.AdminPort), app("b-admin", addr(b, iptables.AdminPort))+ping)
	})

	t.Run("remove takes the rules out", func(t *testing.T) {
		for range 2 { // removing what is gone is no error
			if err := a.RemoveProxyInit(ctx, proxyInit); err != nil {
				t.Fatal(err)
			}
		}
		if saved := natTable(t, a); strings.Contains(saved, "SKEIN") {
			t.Errorf("A's nat table still has Skein's rules:\n%s", saved)
		}
		nettool.expect(t, a, asRoot, addr(b, 8080), proxy("b-in", addr(b, 8080))+app("b", "127.0.0.1:8080")+ping)
	})
}

// TestNetworks checks what the harness promises about networks: they coexist on separate subnets,
// they do not route to each other, and they are gone when their test ends.
func TestNetworks(t *testing.T) {
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	nettool := tool(netns.Build(t, nettoolPackage))
	var bridges, namespaces []string
	t.Run("two networks", func(t *testing.T) {
		var pods []*netns.Pod
		for _, name := range []string{"one", "two"} {
			n, err := netns.NewNetwork(t, name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := n.AddPod("p")
			if err != nil {
				t.Fatal(err)
			}
			if !n.Subnet.Contains(p.IP) || p.IP.Equal(n.Gateway) {
				t.Errorf("pod %s in network %s has IP %s, want one in %s other than %s", p.Name, n.Name, p.IP, n.Subnet, n.Gateway)
			}
			pods = append(pods, p)
			bridges = append(bridges, n.Bridge)
			namespaces = append(namespaces, p.Namespace)
		}
		if pods[0].IP.Mask(net.CIDRMask(24, 32)).Equal(pods[1].IP.Mask(net.CIDRMask(24, 32))) {
			t.Fatalf("both networks use %s", pods[0].IP.Mask(net.CIDRMask(24, 32)))
		}
		nettool.start(t, pods[0].Command(t.Context(), string(nettool), "serve", "-tag", "one", ":8080"))
		target := net.JoinHostPort(pods[0].IP.String(), "8080")
		nettool.expect(t, pods[0], asRoot, target, "app=one local="+target+"\nping\n")
		// A connection would be made in milliseconds; a few seconds show that none will be.
		if out, err := pods[1].Command(t.Context(), string(nettool), "dial", "-timeout", "3s", target).CombinedOutput(); err == nil {
			t.Errorf("a pod of network two reached %s in network one: %s", target, out)
		}
		// SetLink cuts a pod off and brings it back, as the multicluster suite's partition does.
		if err := pods[0].SetLink(false); err != nil {
			t.Fatal(err)
		}
		if c, err := net.DialTimeout("tcp", target, 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the host reached %s with the pod's link down", target)
		}
		if err := pods[0].SetLink(true); err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			t.Fatalf("the host cannot reach %s once the pod's link is up again: %v", target, err)
		}
		c.Close()
	})
	for _, bridge := range bridges {
		if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bridge %s is still there after its test", bridge)
		}
	}
	for _, ns := range namespaces {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("network namespace %s is still there after its test", ns)
		}
	}
}

// TestProxyInitRejectsBadInput runs proxy-init with flags it must refuse before touching iptables.
func TestProxyInitRejectsBadInput(t *testing.T) {
	proxyInit := netns.BuildProxyInit(t)
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--skip-inbound-ports", "80,http"}, `--skip-inbound-ports: "http" is not a port number`},
		{[]string{"--skip-outbound-ports", "9000-8000"}, `--skip-outbound-ports: "9000-8000": the range ends before it starts`},
		{[]string{"--skip-outbound-ports", "1,,2"}, `--skip-outbound-ports: empty item`},
		{[]string{"--inbound-port", "0"}, "--inbound-port 0: must be a port in 1-65535"},
		{[]string{"--outbound-port", "65536"}, "--outbound-port 65536: must be a port in 1-65535"},
		{[]string{"--inbound-port", "4140"}, "--inbound-port and --outbound-port are both 4140"},
		{[]string{"--proxy-uid", "0"}, "--proxy-uid 0: must be a positive user ID"},
		{[]string{"--proxy-uid", "x"}, `invalid value "x" for flag -proxy-uid`},
		{[]string{"--dry-run", "--remove"}, "--dry-run and --remove cannot be combined"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(proxyInit, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("proxy-init %v: %v, want exit code 2 (stdout %q, stderr %q)", tt.args, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("proxy-init %v said %q, want %q", tt.args, stderr.String(), tt.wantErr)
			}
		})
	}

	t.Run("dry run prints the rules", func(t *testing.T) {
		out, err := exec.Command(proxyInit, "--dry-run", "--proxy-uid", "999", "--skip-outbound-ports", "5432,8000-8010").Output()
		if err != nil {
			t.Fatal(err)
		}
		want, err := iptables.Restore(iptables.Config{ProxyUID: 999, SkipOutboundPorts: []int{5432, 8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007, 8008, 8009, 8010}})
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != want {
			t.Errorf("--dry-run printed:\n%s\nwant:\n%s", out, want)
		}
	})
}

// natTable returns the pod's nat table as iptables-save prints it.
func natTable(t *testing.T, p *netns.Pod) string {
	t.Helper()
	backend, err := iptables.DetectBackend(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Command(t.Context(), backend.Save, "-t", "nat").Output()
	if err != nil {
		t.Fatalf("%s in pod %s: %v", backend.Save, p.Name, err)
	}
	return string(out)
}

// tool is the path of the nettool program, which plays applications, proxies and clients in pods.
type tool string

// start starts a nettool server and waits until it listens; it is stopped when the test ends.
func (tl tool) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	out := &readyWriter{ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The command's context is the test's, cancelled before cleanups run, which kills it.
	t.Cleanup(func() { _ = cmd.Wait() })
	select {
	case <-out.ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not start listening: %s", cmd.Args, out.String())
	}
}

// dial connects from pod p, as uid (or asRoot), and returns what came back.
func (tl tool) dial(t *testing.T, p *netns.Pod, uid int, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := p.Command(ctx, string(tl), "dial", addr)
	if uid != asRoot {
		cmd = p.CommandAs(ctx, uid, string(tl), "dial", addr)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dialling %s from pod %s as %s: %v: %s", addr, p.Name, user(uid), err, stderr.String())
	}
	return string(out)
}

// expect dials and checks every line that came back.
func (tl tool) expect(t *testing.T, p *netns.Pod, uid int, addr, want string) {
	t.Helper()
	if got := tl.dial(t, p, uid, addr); got != want {
		t.Errorf("dialling %s from pod %s as %s got:\n%s\nwant:\n%s", addr, p.Name, user(uid), got, want)
	}
}

func user(uid int) string {
	if uid == asRoot {
		return "root"
	}
	return fmt.Sprintf("uid %d", uid)
}

// readyWriter collects a server's output and closes ready once it says it is listening.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), "listening\n") {
		w.once.Do(func() { close(w.ready) })
	}
	return len(b), nil
}

func (w *readyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
