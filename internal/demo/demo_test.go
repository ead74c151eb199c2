package demo_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/demo"
	"github.com/skeinmesh/skein/internal/localcluster"
)

// TestDemoOnce runs the demo as `DEMO_ONCE=1 make demo` does, with the control plane built from this
// tree, and checks that it shows a Ready MeshConfig, a Healthy MeshStatus, the trust chain cert-manager
// issued, a workload certified by the identity service, and traffic between meshed pods configured
// over xDS, shared by the sample TrafficSplit.
func TestDemoOnce(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	controller := filepath.Join(dir, "skein-controller")
	build := exec.Command("go", "build", "-o", controller, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the control plane: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := demo.Run(ctx, demo.Options{Controller: controller, Dir: dir, Once: true, Out: &out}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, &out)
	}
	for _, want := range []string{
		`meshconfig.mesh.skein.dev/default condition met`,
		`meshconfig.mesh.skein.dev/default\s+True\s+cluster.local`,
		`trafficsplit.mesh.skein.dev/web\s+web`,
		`the webhook refuses it:\n.*spec.backends\[0\].service: Invalid value: "web": sends the traffic of service web-canary round in a loop: web-canary → web \(this TrafficSplit\), web → web-canary \(TrafficSplit web\)`,
		`meshstatus.mesh.skein.dev/default\s+Healthy\s+0/0`,
		`certificate.cert-manager.io/skein-identity-issuer\s+True`,
		`certificate for spiffe://cluster.local/ns/default/sa/web\n\s+issued by "identity.cluster.local", valid 24h0m20s`,
		`client -> web:80 over http1 answered: 200 HTTP/1.1 /http1 spiffe://cluster.local/ns/default/sa/client hello-from-client`,
		`client -> web:80 over grpc\s+answered: 200 grpc-status=0`,
		`client -> web:9000 over tcp\s+answered: echo: hello-from-client`,
		`at web-stable 90, web-canary 10\n\s+ok=\d+ failed=0\s+served-by web-canary-1=\d+ web-stable-1=\d+`,
		`trafficsplit.mesh.skein.dev/web patched`,
		`web\s+web\s+True\s+\S+\s+Weights in force: web-stable 50, web-canary 50`,
		`at web-stable 0, web-canary 100\n\s+ok=\d+ failed=0\s+served-by web-canary-1=\d+\n`,
		`xds_updates_total\{result="ack",type="endpoint"\} [1-9]`,
		`init containers: skein-init \(restartPolicy \) skein-proxy \(restartPolicy Always\) \n\s+containers: app \n`,
		`externalworkload.mesh.skein.dev/billing-vm-1 condition met`,
		`==> skein check --identity-addr`,
		`billing-vm-1\s+spiffe://cluster.local/ns/default/sa/billing\s+10\.\S+\s+True`,
		`default\s+billing\s+1/1\s`,
		`client -> billing:80 \(the VM \S+\) answered: 200 HTTP/1.1 /\S* spiffe://cluster.local/ns/default/sa/client hello-vm`,
		`web-east mirrored \S+ after the Link was applied`,
		`client -> web-east:80 \(through east's gateway\) answered: 200 HTTP/1.1 /http1 spiffe://cluster.local/ns/skein-system/sa/skein-gateway hello-east forwarded-for=spiffe://cluster.local/ns/default/sa/client`,
		`east\s+east\s+10\.\S+\s+false\s+1\s+False`,
		`restored \S+ after the link came back`,
		`client -> web-east:80 answered again: 200 `,
		`meshconfig.mesh.skein.dev/default patched`,
		`default-namespace\s+Healthy\s+3/3\s+100.00%\s+100.00%\s+\d+\.\d+\s+\S+ms`,
		`==> skein stat services -n default\n\s+NAMESPACE\s+NAME\s+MESHED\s+SUCCESS\s+RPS\s+LATENCY_P50\s+LATENCY_P95\s+LATENCY_P99\s+TCP_CONN\n`,
		`default\s+web\s+2/2\s+100.00%\s+\d+\.\drps`,
		`==> skein stat trafficsplits -n default\n\s+NAMESPACE\s+NAME.*APEX\s+BACKEND\s+WEIGHT\s+OBSERVED\n`,
		`==> Stopping the API server`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("the demo's output lacks %q:\n%s", want, &out)
		}
	}
}
