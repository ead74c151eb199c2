package localmesh

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/test/netns"
)

// Images maps container images to the binaries built from this repository that stand for them.
type Images map[string]string

// LocalImages maps the given proxy, proxy-init and workload images to the binaries the mesh built,
// for RunPod.
func (m *Mesh) LocalImages(proxy, proxyInit, workload string) Images {
	return Images{proxy: m.proxy, proxyInit: m.proxyIn, workload: m.workload}
}

// RunPod runs a Pod, as the API server admitted it, the way the kubelet would: in a network
// namespace of its own; with its volumes written under a directory of the pod's and the mount
// paths in its containers' environment, command and arguments rewritten to match; its environment
// resolved (fieldRefs and $(VAR) references); its init containers run to completion in order, each
// native sidecar (restartPolicy Always) instead started and its startup probe awaited before the
// next one; then its containers started in order, each one's postStart hook run to completion
// before the next starts. Each image runs as the binary images maps it to, a container's command
// standing for that binary. The pod is recorded as Running at its address, as the kubelet reports.
// Names the pod looks up come from Options.Hosts, standing in for the cluster's DNS.
//
// The Pod returned can Run commands, be a Service's endpoint and, for a Job's pod, WaitCompleted; it
// cannot Restart.
func (m *Mesh) RunPod(pod *corev1.Pod, images Images) (*Pod, error) {
	np, err := m.Network.AddPod(pod.Name)
	if err != nil {
		return nil, err
	}
	if err := m.writeHosts(np); err != nil {
		return nil, err
	}
	r := &podRun{m: m, pod: pod.DeepCopy(), np: np, images: images, dir: filepath.Join(m.dir, pod.Namespace+"."+pod.Name)}
	if err := m.recordRunning(r.pod, np.IP.String()); err != nil {
		return nil, err
	}
	if err := r.writeVolumes(); err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	for _, c := range r.pod.Spec.InitContainers {
		if err := r.runInit(c); err != nil {
			return nil, fmt.Errorf("pod %s: init container %s: %w", pod.Name, c.Name, err)
		}
	}
	for _, c := range r.pod.Spec.Containers {
		if err := r.start(c); err != nil {
			return nil, fmt.Errorf("pod %s: container %s: %w", pod.Name, c.Name, err)
		}
	}
	return &Pod{Pod: np, mesh: m, Admin: fmt.Sprintf("http://%s:%d", np.IP, adminPort(r.pod)), run: r,
		ID: spiffe.ID{TrustDomain: m.TrustDomain, Namespace: pod.Namespace, ServiceAccount: r.pod.Spec.ServiceAccountName}}, nil
}

// RunDeploymentPod runs one pod of the Deployment namespace/name, once it exists (it waits up to
// 30 seconds, as for a Deployment an operator makes), the way its ReplicaSet would start it: a Pod
// from its template, created through the API server, then run by RunPod and awaited until ready.
func (m *Mesh) RunDeploymentPod(namespace, name string, images Images) (*Pod, error) {
	dep := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: namespace, Name: name}
	if err := waitFor(30*time.Second, "Deployment "+key.String(), func() bool { return m.Client.Get(m.ctx, key, dep) == nil }); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-0", Labels: dep.Spec.Template.Labels, Annotations: dep.Spec.Template.Annotations},
		Spec:       dep.Spec.Template.Spec,
	}
	if err := m.Client.Create(m.ctx, pod); err != nil {
		return nil, fmt.Errorf("creating a pod of Deployment %s: %w", key, err)
	}
	p, err := m.RunPod(pod, images)
	if err != nil {
		return nil, err
	}
	return p, p.WaitReady()
}

// running is a container's process.
type running struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// WaitCompleted is for a pod run by RunPod whose restartPolicy is not Always, a Job's: it waits
// until the pod's containers have exited, then stops its native sidecars as the kubelet does
// (SIGTERM, the last started first, SIGKILL after the grace period), records the pod Succeeded or
// Failed in the API server, and returns that phase. A classic sidecar is a container like any other:
// the pod completes only if it exits.
func (p *Pod) WaitCompleted(timeout time.Duration) (corev1.PodPhase, error) {
	r := p.run
	if r == nil || r.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		return "", fmt.Errorf("pod %s: only a pod run by RunPod with restartPolicy Never or OnFailure completes", p.Name)
	}
	phase := corev1.PodSucceeded
	for _, c := range r.containers {
		if err := wait(c.exited, timeout, p.Name+"'s container "+c.name+" to exit"); err != nil {
			return "", err
		}
		if c.cmd.ProcessState.ExitCode() != 0 {
			phase = corev1.PodFailed
		}
	}
	grace := 30 * time.Second
	if s := r.pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	for i := len(r.sidecars) - 1; i >= 0; i-- {
		c := r.sidecars[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		if wait(c.exited, grace, "") != nil {
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	r.pod.Status.Phase = phase
	if err := r.m.Client.Status().Update(r.m.ctx, r.pod); err != nil {
		return "", fmt.Errorf("recording pod %s/%s %s: %w", r.pod.Namespace, r.pod.Name, phase, err)
	}
	return phase, nil
}

// Logs is what the pod's container name (an init container's too) has printed so far.
func (p *Pod) Logs(container string) string {
	if p.run != nil {
		for _, c := range slices.Concat(p.run.inits, p.run.sidecars, p.run.containers) {
			if c.name == container {
				return c.out.String()
			}
		}
	}
	return ""
}

// syncBuffer is a bytes.Buffer that a process's output goroutine writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// writeHosts gives the pod an /etc/hosts with Options.Hosts, and an /etc/resolv.conf: `ip netns
// exec` mounts the files of /etc/netns/<namespace>/ over those of /etc for what it runs.
func (m *Mesh) writeHosts(np *netns.Pod) error {
	dir := filepath.Join("/etc/netns", np.Namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m.t.Cleanup(func() { os.RemoveAll(dir) })
	names := make([]string, 0, len(m.Hosts))
	for name := range m.Hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	hosts := "127.0.0.1 localhost\n"
	for _, name := range names {
		hosts += m.Hosts[name] + " " + name + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	// No DNS server answers here: one on the pod's loopback refuses at once what is not in the
	// hosts file (gRPC's resolver asks for TXT records too), where the host's, which the pod cannot
	// reach, would time out.
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644)
}

// recordRunning reports the pod Running at ip, as the kubelet would, so that the control plane
// knows the pod's proxy and its endpoints.
func (m *Mesh) recordRunning(pod *corev1.Pod, ip string) error {
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		HostIP: m.Network.Gateway.String(), StartTime: ptr.To(metav1.Now())}
	if err := m.Client.Status().Update(m.ctx, pod); err != nil {
		return fmt.Errorf("recording pod %s/%s running: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// adminPort is the proxy's admin port in pod: its container's skein-admin port.
func adminPort(pod *corev1.Pod) int32 {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if c.Name == meshv1.ProxyContainerName && p.Name == "skein-admin" {
					return p.ContainerPort
				}
			}
		}
	}
	return 4191
}

// podRun is a pod being started.
type podRun struct {
	m      *Mesh
	pod    *corev1.Pod
	np     *netns.Pod
	images Images
	dir    string
	// inits are the init containers that ran to completion, sidecars the native sidecars and
	// containers the regular containers, as started.
	inits, sidecars, containers []*running
}

func (r *podRun) command(ctx context.Context, p *process, bin string, args ...string) *exec.Cmd {
	cmd := r.np.Command(ctx, bin, args...)
	if p.uid != 0 {
		cmd = r.np.CommandAs(ctx, int(p.uid), bin, args...)
	}
	cmd.Env = p.env
	return cmd
}

// runInit runs an init container to completion, or starts a native sidecar.
func (r *podRun) runInit(c corev1.Container) error {
	if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
		return r.start(c)
	}
	p, err := r.resolve(c)
	if err != nil {
		return err
	}
	out, err := r.command(r.m.ctx, p, p.bin, p.args...).CombinedOutput()
	r.m.t.Logf("%s %s: %s", r.pod.Name, c.Name, strings.TrimSpace(string(out)))
	done := &running{name: c.Name, out: &syncBuffer{}}
	done.out.Write(out)
	r.inits = append(r.inits, done)
	if err != nil {
		return fmt.Errorf("%s %s: %w", p.bin, strings.Join(p.args, " "), err)
	}
	return nil
}

// start starts a long-running container, then waits for its startup probe and its postStart hook,
// as the kubelet does before it starts the next container.
func (r *podRun) start(c corev1.Container) error {
	p, err := r.resolve(c)
	if err != nil {
		return err
	}
	out := &syncBuffer{}
	cmd, exited, err := r.m.start(r.command(r.m.ctx, p, p.bin, p.args...), r.pod.Name+" "+c.Name, out)
	if err != nil {
		return err
	}
	proc := &running{name: c.Name, cmd: cmd, exited: exited, out: out}
	if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
		r.sidecars = append(r.sidecars, proc)
	} else {
		r.containers = append(r.containers, proc)
	}
	if probe := c.StartupProbe; probe != nil {
		if err := r.awaitProbe(c, probe); err != nil {
			return fmt.Errorf("startup probe: %w", err)
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		hook := c.Lifecycle.PostStart.Exec
		if hook == nil || len(hook.Command) == 0 {
			return fmt.Errorf("postStart: only exec hooks are supported by RunPod")
		}
		args, err := r.commandArgs(c, p.bin, hook.Command, nil, nil)
		if err != nil {
			return fmt.Errorf("postStart: %w", err)
		}
		out, err := r.command(r.m.ctx, p, p.bin, args...).CombinedOutput()
		r.m.t.Logf("%s %s postStart %v: %s", r.pod.Name, c.Name, hook.Command, strings.TrimSpace(string(out)))
		if err != nil {
			return fmt.Errorf("postStart %v: %w", hook.Command, err)
		}
	}
	return nil
}

// awaitProbe probes until the probe passes, for as long as its failure threshold allows.
func (r *podRun) awaitProbe(c corev1.Container, probe *corev1.Probe) error {
	get := probe.HTTPGet
	if get == nil {
		return fmt.Errorf("only httpGet probes are supported by RunPod")
	}
	port := get.Port.IntValue()
	for _, cp := range c.Ports {
		if get.Port.StrVal != "" && cp.Name == get.Port.StrVal {
			port = int(cp.ContainerPort)
		}
	}
	url := fmt.Sprintf("http://%s:%d%s", r.np.IP, port, get.Path)
	period := time.Duration(max(probe.PeriodSeconds, 1)) * time.Second
	limit := time.Duration(max(probe.FailureThreshold, 1)) * period
	return waitFor(limit, url+" to answer", func() bool { return statusOK(url) })
}

// statusOK tells whether a GET of url answers 200, as an HTTP probe passes.
func statusOK(url string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
