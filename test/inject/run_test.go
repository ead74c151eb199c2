package inject_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/test/localmesh"
)

// TestInjectedPodsTalkMTLS creates pods in a namespace that asks for injection and runs them as the
// API server admitted them: proxy-init's rules, the native sidecar and the application. A client's
// request to a Service goes through both proxies with mTLS, the server seeing the client's identity.
func TestInjectedPodsTalkMTLS(t *testing.T) {
	e := newEnv(t)
	e.namespace(t, "shop", map[string]string{meshv1.InjectAnnotation: inject.Enabled}, "web", "client")
	web := e.run(t, e.create(t, workloadPod("shop", "web-1", "web", map[string]string{
		inject.ProxyLogLevelAnnotation: "debug", inject.SkipInboundPortsAnnotation: "9000"})))
	client := e.run(t, e.create(t, workloadPod("shop", "client", "client", nil)))
	clusterIP, err := e.mesh.Serve("web", "shop", web)
	if err != nil {
		t.Fatal(err)
	}
	call(t, client, clusterIP, "spiffe://cluster.local/ns/shop/sa/client hello")

	t.Log("the port the web pod's annotation skips reaches its application without the proxy; the others need mTLS")
	if got := plainTCP(t, web.IP.String()+":9000"); got != "echo: plain" {
		t.Errorf("a plain TCP client of the skipped port got %q, want the application's echo", got)
	}
	if got, err := client.Run(localmesh.ProxyUID, "-mode", "http1", "-addr", web.IP.String()+":8080", "-body", "plain"); err == nil || strings.HasPrefix(got, "200") {
		t.Errorf("a plain HTTP client of port 8080, not skipped, got %q", got)
	}

	t.Log("a Job's pod completes: its first request goes through the native sidecar, which is stopped once the application exits")
	job := workloadPod("shop", "job", "client", nil)
	job.Spec.RestartPolicy = corev1.RestartPolicyNever
	job.Spec.Containers[0].Args = []string{"-mode", "http1", "-addr", clusterIP + ":80", "-body", "from-a-job"}
	// The application's own init container runs after the injected proxy has started, so its
	// traffic is meshed too.
	job.Spec.InitContainers = []corev1.Container{{Name: "warm-up", Image: workloadImage,
		Args: []string{"-mode", "http1", "-addr", clusterIP + ":80", "-body", "from-an-init-container"}}}
	jobPod, err := e.mesh.RunPod(e.create(t, job), e.images)
	if err != nil {
		t.Fatal(err)
	}
	phase, err := jobPod.WaitCompleted(time.Minute)
	if err != nil || phase != corev1.PodSucceeded {
		t.Fatalf("the Job's pod ended %s (%v); its application said %q", phase, err, jobPod.Logs("app"))
	}
	for container, want := range map[string]string{
		"warm-up": "spiffe://cluster.local/ns/shop/sa/client from-an-init-container",
		"app":     "spiffe://cluster.local/ns/shop/sa/client from-a-job",
	} {
		if got := jobPod.Logs(container); !strings.Contains(got, want) {
			t.Errorf("the Job's container %s got %q, want %q", container, got, want)
		}
	}

	t.Log("with MeshConfig asking for classic sidecars, the proxy is the first container and the application waits for it")
	mc := &meshv1.MeshConfig{}
	if err := e.Client.Get(e.ctx, ctrlclient.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		t.Fatal(err)
	}
	mc.Spec.Injection.SidecarMode = meshv1.SidecarClassic
	if err := e.Client.Update(e.ctx, mc); err != nil {
		t.Fatal(err)
	}
	classic := e.create(t, workloadPod("shop", "classic", "client", nil))
	if classic.Spec.Containers[0].Name != meshv1.ProxyContainerName || classic.Spec.Containers[0].Lifecycle == nil {
		t.Fatalf("the classic pod's containers are %v", classic.Spec.Containers)
	}
	call(t, e.run(t, classic), clusterIP, "spiffe://cluster.local/ns/shop/sa/client hello")
}

// call has the workload in pod c call the Service at clusterIP over HTTP/1.1 until it answers,
// which it does once the client's proxy has the Service from the control plane, and checks that
// the answer says want.
func call(t *testing.T, c *localmesh.Pod, clusterIP, want string) {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = c.Run(0, "-mode", "http1", "-addr", clusterIP+":80", "-body", "hello"); err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("the client got %q (%v), want %q", out, err, want)
	}
}

// plainTCP sends a line to addr from the host, outside any pod, and returns the line answered.
func plainTCP(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(conn, "plain")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(line)
}
