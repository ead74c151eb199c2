package demo

import (
	"context"
	"fmt"
)

// injectedPod shows the pod injector: a pod created with kubectl in a namespace annotated for
// injection comes back with proxy-init and the proxy as a native sidecar. No kubelet runs here, so
// the demo shows the admitted spec; the meshed pods that follow run the same containers for real.
func (d *demo) injectedPod(ctx context.Context) error {
	d.say("Proxy injection: kubectl creates a pod in namespace shop, annotated mesh.skein.dev/inject=enabled")
	manifest := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","annotations":{"mesh.skein.dev/inject":"enabled"}}}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"},"spec":{"serviceAccountName":"web","containers":[{"name":"app","image":"ghcr.io/skeinmesh/example-web:v1","ports":[{"containerPort":8080}]}]}}`
	out, err := d.cluster.Kubectl(ctx, []byte(manifest), "create", "-f", "-")
	d.printf("%s", indent(out))
	if err != nil {
		return err
	}
	out, err = d.cluster.Kubectl(ctx, nil, "get", "pod", "web", "-n", "shop", "-o",
		`jsonpath=init containers: {range .spec.initContainers[*]}{.name} (restartPolicy {.restartPolicy}) {end}{"\n"}containers: {range .spec.containers[*]}{.name} {end}{"\n"}annotations: {.metadata.annotations}{"\n"}`)
	if err != nil {
		return fmt.Errorf("reading the injected pod: %w", err)
	}
	d.printf("%s", indent(out))
	return nil
}
