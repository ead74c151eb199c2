// Package netns gives tests real "pods" (or VMs): Linux network namespaces wired to a bridge on the
// host, in which proxies and workloads run as ordinary processes behind the iptables rules that
// Skein's init container applies. It needs root, iproute2, iptables and util-linux's setpriv
// (`make test-deps` installs what is missing).
//
// Addresses: each Network takes its own 10.250.N.0/24 out of 10.250.0.0/16, the bridge at .1 and
// its pods from .2, so the networks of several tests, and of test binaries running in parallel, can
// coexist; N is chosen under a host-wide file lock. A pod's default route goes to the bridge, so
// connections to any address reach the pod's iptables rules, but the host does not forward what
// arrives on the bridge (its IPv4 forwarding is turned off when it is made): a pod reaches the
// pods of its network and the host itself, never another network or another machine.
//
// Names carry the test process's PID. Everything is removed in t.Cleanup, and what a crashed run
// left behind (its PID no longer alive) is removed by the next NewNetwork.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/proxy/iptables"
)

const (
	bridgePrefix = "skb"   // skb<pid>-<n>, at most 15 characters as Linux requires of link names
	vethPrefix   = "skv"   // skv<pid>-<n>, the host end of a pod's veth pair
	nsPrefix     = "skein" // skein-<pid>-<n>-<pod name>
	maxLinkName  = 15      // IFNAMSIZ less the terminating NUL
	lockFile     = "/run/lock/skein-netns.lock"
	waitDelay    = 30 * time.Second // how long a killed command may keep its output open
)

// T is what the harness needs of its caller: a *testing.T, or, for the demo, anything that runs
// clean-ups at the end and can log and fail.
type T interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// Sequence numbers keep names unique within this process; the PID keeps them unique across
// processes.
var networkSeq, podSeq atomic.Int64

// Supported says why this machine cannot run pods, or nil when it can. Tests that need pods call
// it and fail with its message: a CI that skipped them would pass without testing anything.
func Supported() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "must run as root: it creates network namespaces, links and iptables rules")
	}
	for _, tool := range []string{"ip", "setpriv"} {
		if _, err := lookPath(tool); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if _, err := iptables.DetectBackend(context.Background()); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("network-namespace pods are unsupported here (`make test-deps` installs the missing tools): %s", strings.Join(problems, "; "))
	}
	return nil
}

// Network is a bridge on the host that pods attach to, with one /24 of 10.250.0.0/16.
type Network struct {
	// Name is the caller's name for it, for messages.
	Name string
	// Bridge is the bridge's link name on the host.
	Bridge string
	// Gateway is the bridge's address, the pods' default route.
	Gateway net.IP
	// Subnet is the network's /24.
	Subnet *net.IPNet

	t        T
	mu       sync.Mutex
	nextHost int
}

// NewNetwork creates a bridge with a free /24 and removes it when t ends.
func NewNetwork(t T, name string) (*Network, error) {
	t.Helper()
	if err := Supported(); err != nil {
		return nil, err
	}
	unlock, err := lockHost()
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStale(t)

	n := &Network{Name: name, Bridge: fmt.Sprintf("%s%d-%d", bridgePrefix, os.Getpid(), networkSeq.Add(1)), t: t, nextHost: 2}
	if len(n.Bridge) > maxLinkName {
		return nil, fmt.Errorf("bridge name %s is longer than Linux allows", n.Bridge)
	}
	// A crashed run of a process that had our PID may have left a bridge of this name.
	if linkExists(n.Bridge) {
		if err := ip("link", "del", n.Bridge); err != nil {
			return nil, fmt.Errorf("removing a leftover bridge %s: %w", n.Bridge, err)
		}
	}
	third, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	n.Gateway = net.IPv4(10, 250, byte(third), 1).To4()
	n.Subnet = &net.IPNet{IP: net.IPv4(10, 250, byte(third), 0).To4(), Mask: net.CIDRMask(24, 32)}

	if err := ip("link", "add", n.Bridge, "type", "bridge"); err != nil {
		return nil, fmt.Errorf("creating network %s: %w", name, err)
	}
	t.Cleanup(func() {
		if err := ip("link", "del", n.Bridge); err != nil {
			t.Errorf("removing network %s: %v", name, err)
		}
	})
	// Pods route everything to the bridge; refusing to forward keeps that traffic on this machine
	// even where the host forwards between its other interfaces.
	forwarding := filepath.Join("/proc/sys/net/ipv4/conf", n.Bridge, "forwarding")
	if err := os.WriteFile(forwarding, []byte("0"), 0o644); err != nil {
		return nil, fmt.Errorf("turning off forwarding on network %s: %w", name, err)
	}
	if err := ip("addr", "add", fmt.Sprintf("%s/24", n.Gateway), "dev", n.Bridge); err != nil {
		return nil, fmt.Errorf("addressing network %s: %w", name, err)
	}
	if err := ip("link", "set", n.Bridge, "up"); err != nil {
		return nil, fmt.Errorf("bringing network %s up: %w", name, err)
	}
	return n, nil
}

// Pod is a network namespace attached to a Network, with eth0 at IP and lo up.
type Pod struct {
	// Name is the caller's name for it.
	Name string
	// IP is eth0's address.
	IP net.IP
	// Namespace is the network namespace's name, as `ip netns` knows it.
	Namespace string

	network  *Network
	hostVeth string
	once     sync.Once
	err      error
}

var podName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// AddPod creates a network namespace with the next free address of n, removed when the test ends.
func (n *Network) AddPod(name string) (*Pod, error) {
	if !podName.MatchString(name) {
		return nil, fmt.Errorf("pod name %q: use up to 32 lowercase letters, digits and dashes", name)
	}
	n.mu.Lock()
	host := n.nextHost
	n.nextHost++
	n.mu.Unlock()
	if host > 254 {
		return nil, fmt.Errorf("network %s is full", n.Name)
	}
	seq := podSeq.Add(1)
	p := &Pod{
		Name:      name,
		IP:        net.IPv4(10, 250, n.Subnet.IP[2], byte(host)).To4(),
		Namespace: fmt.Sprintf("%s-%d-%d-%s", nsPrefix, os.Getpid(), seq, name),
		network:   n,
		hostVeth:  fmt.Sprintf("%s%d-%d", vethPrefix, os.Getpid(), seq),
	}
	if len(p.hostVeth) > maxLinkName {
		return nil, fmt.Errorf("link name %s is longer than Linux allows", p.hostVeth)
	}
	// Leftovers of a crashed process that had our PID.
	if nsExists(p.Namespace) {
		_ = ip("netns", "del", p.Namespace)
	}
	if linkExists(p.hostVeth) {
		_ = ip("link", "del", p.hostVeth)
	}

	if err := ip("netns", "add", p.Namespace); err != nil {
		return nil, fmt.Errorf("creating pod %s: %w", name, err)
	}
	n.t.Cleanup(func() {
		if err := p.Delete(); err != nil {
			n.t.Errorf("%v", err)
		}
	})
	steps := [][]string{
		{"link", "add", p.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", p.Namespace},
		{"link", "set", p.hostVeth, "master", n.Bridge},
		{"link", "set", p.hostVeth, "up"},
		{"-n", p.Namespace, "link", "set", "lo", "up"},
		{"-n", p.Namespace, "addr", "add", fmt.Sprintf("%s/24", p.IP), "dev", "eth0"},
		{"-n", p.Namespace, "link", "set", "eth0", "up"},
		{"-n", p.Namespace, "route", "add", "default", "via", n.Gateway.String()},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return nil, fmt.Errorf("setting up pod %s: %w", name, err)
		}
	}
	return p, nil
}

// Command returns a command that runs name inside the pod's network namespace, as root. Cancelling
// ctx kills it: `ip netns exec` execs name, so the process killed is name itself.
func (p *Pod) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, mustLookPath("ip"), append([]string{"netns", "exec", p.Namespace, name}, args...)...)
	cmd.WaitDelay = waitDelay
	// If the test process dies, its pods' processes die with it rather than linger in namespaces
	// that nobody will clean up until the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// CommandAs is Command run as user and group uid, with no supplementary groups, as a pod's
// container runs as its securityContext's user. Entering a network namespace needs root, so the
// command enters it as root and then drops to uid with setpriv, which also sets the parent-death
// signal again since changing the user clears it.
func (p *Pod) CommandAs(ctx context.Context, uid int, name string, args ...string) *exec.Cmd {
	id := strconv.Itoa(uid)
	return p.Command(ctx, mustLookPath("setpriv"), append([]string{"--reuid=" + id, "--regid=" + id, "--clear-groups", "--pdeathsig", "KILL", "--", name}, args...)...)
}

// ApplyProxyInit runs the proxy-init binary (see BuildProxyInit) in the pod with the flags that
// express c, as the pod's init container would.
func (p *Pod) ApplyProxyInit(ctx context.Context, proxyInit string, c iptables.Config) error {
	args := []string{"--proxy-uid", strconv.Itoa(c.ProxyUID)}
	if c.InboundPort != 0 {
		args = append(args, "--inbound-port", strconv.Itoa(c.InboundPort))
	}
	if c.OutboundPort != 0 {
		args = append(args, "--outbound-port", strconv.Itoa(c.OutboundPort))
	}
	if len(c.SkipInboundPorts) > 0 {
		args = append(args, "--skip-inbound-ports", iptables.FormatPorts(c.SkipInboundPorts))
	}
	if len(c.SkipOutboundPorts) > 0 {
		args = append(args, "--skip-outbound-ports", iptables.FormatPorts(c.SkipOutboundPorts))
	}
	return p.runProxyInit(ctx, proxyInit, args...)
}

// RemoveProxyInit runs `proxy-init --remove` in the pod.
func (p *Pod) RemoveProxyInit(ctx context.Context, proxyInit string) error {
	return p.runProxyInit(ctx, proxyInit, "--remove")
}

func (p *Pod) runProxyInit(ctx context.Context, proxyInit string, args ...string) error {
	out, err := p.Command(ctx, proxyInit, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("proxy-init %s in pod %s: %w: %s", strings.Join(args, " "), p.Name, err, bytes.TrimSpace(out))
	}
	p.network.t.Logf("proxy-init %s in pod %s:\n%s", strings.Join(args, " "), p.Name, bytes.TrimSpace(out))
	return nil
}

// SetLink brings the host end of the pod's veth down or up: down cuts the pod off from its
// network and the host, as a network partition would, while its processes keep running.
func (p *Pod) SetLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := ip("link", "set", p.hostVeth, state); err != nil {
		return fmt.Errorf("setting pod %s's link %s: %w", p.Name, state, err)
	}
	return nil
}

// Delete kills what still runs in the pod and removes it. It runs at the end of the test anyway;
// calling it again does nothing.
func (p *Pod) Delete() error {
	p.once.Do(func() {
		// They can only be processes this test started, since the namespace is this process's.
		killProcesses(p.Namespace)
		var errs []error
		// Deleting the host end takes the pod's end with it, at once; a namespace's own links go
		// only when the kernel gets round to destroying it.
		if linkExists(p.hostVeth) {
			if err := ip("link", "del", p.hostVeth); err != nil {
				errs = append(errs, err)
			}
		}
		if err := ip("netns", "del", p.Namespace); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			p.err = fmt.Errorf("deleting pod %s: %w", p.Name, err)
		}
	})
	return p.err
}

// killProcesses kills the processes in the network namespace ns: a namespace lives on, unnamed,
// as long as a process is in it.
func killProcesses(ns string) {
	out, err := exec.Command(mustLookPath("ip"), "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(field); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ip runs the ip command, returning its output in the error.
func ip(args ...string) error {
	out, err := exec.Command(mustLookPath("ip"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func ipOutput(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(mustLookPath("ip"), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// lockHost takes the host-wide lock under which networks pick their subnets and leftovers are
// removed; the kernel drops it if the process dies.
func lockHost() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(lockFile), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}

// freeSubnet returns the lowest N for which no host interface has an address in 10.250.N.0/24.
func freeSubnet() (int, error) {
	out, err := ipOutput("-4", "-o", "addr", "show")
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, m := range regexp.MustCompile(`inet 10\.250\.(\d+)\.`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		used[n] = true
	}
	for n := 1; n <= 254; n++ {
		if !used[n] {
			return n, nil
		}
	}
	return 0, errors.New("every /24 of 10.250.0.0/16 is taken by a network")
}

var (
	staleBridge = regexp.MustCompile(`^` + bridgePrefix + `(\d+)-\d+$`)
	staleNS     = regexp.MustCompile(`^` + nsPrefix + `-(\d+)-\d+-`)
	staleBinDir = regexp.MustCompile(`^` + binDirPrefix + `(\d+)-`)
)

// removeStale removes the bridges, namespaces, their /etc files and binaries of test processes that
// are gone.
func removeStale(t T) {
	if names, err := ipOutput("netns", "list"); err == nil {
		for _, line := range strings.Split(names, "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if m := staleNS.FindStringSubmatch(fields[0]); m != nil && !alive(m[1]) {
				// What the dead test started there, had it escaped its parent-death signal.
				killProcesses(fields[0])
				if err := ip("netns", "del", fields[0]); err != nil {
					t.Logf("Removing a leftover pod: %v", err)
				}
			}
		}
	}
	// The /etc files that `ip netns exec` mounts for a pod (test/localmesh writes them).
	etcDirs, _ := filepath.Glob(filepath.Join("/etc/netns", nsPrefix+"-*"))
	for _, dir := range etcDirs {
		if m := staleNS.FindStringSubmatch(filepath.Base(dir)); m != nil && !alive(m[1]) {
			_ = os.RemoveAll(dir)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, dir := range dirs {
		if m := staleBinDir.FindStringSubmatch(filepath.Base(dir)); m != nil && !alive(m[1]) {
			_ = os.RemoveAll(dir)
		}
	}
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return
	}
	for _, l := range links {
		if m := staleBridge.FindStringSubmatch(l.Name()); m != nil && !alive(m[1]) {
			if err := ip("link", "del", l.Name()); err != nil {
				t.Logf("Removing a leftover network: %v", err)
			}
		}
	}
}

// alive says whether process pid still runs. A killed test that nobody has reaped yet is a zombie,
// which counts as dead.
func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	if err != nil {
		return true
	}
	if syscall.Kill(n, 0) == syscall.ESRCH {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name, which is in parentheses and may itself contain them.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

func mustLookPath(name string) string {
	p, err := lookPath(name)
	if err != nil {
		return name // running it then fails with a clear "not found"
	}
	return p
}

// lookPath also looks in the sbin directories, which a non-login shell's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
