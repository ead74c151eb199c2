package bundle

import (
	"fmt"
	"strings"
	"testing"
)

// A minimal render of config/default: the Deployment, its ServiceAccount's ClusterRole, and a
// webhook Service.
const minimal = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: skein-controller, namespace: skein-system}
spec:
  selector: {matchLabels: {app: skein}}
  template:
    metadata: {labels: {app: skein}}
    spec:
      serviceAccountName: skein-controller
      containers:
      - name: controller
        image: example.com/skein-controller:v1.2.3
        ports: [{name: webhook, containerPort: 9443}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: skein-manager-role}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: skein-manager-rolebinding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: skein-manager-role}
subjects: [{kind: ServiceAccount, name: skein-controller, namespace: skein-system}]
---
apiVersion: v1
kind: Service
metadata: {name: skein-webhook-service, namespace: skein-system}
spec:
  ports: [{port: 443, targetPort: webhook}]
`

const podWebhook = `
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: skein-mutating}
webhooks:
- name: pods.mesh.skein.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: %s
  clientConfig: {service: {name: %s, namespace: skein-system, path: /mutate}}
  namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [skein-system]}]}
`

func build(t *testing.T, base, rendered string) error {
	t.Helper()
	objs, err := decodeAll([]byte(rendered), "the test's render")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = buildCSV([]byte(base), []byte("<svg/>"), objs, nil, nil)
	return err
}

const base = "apiVersion: operators.coreos.com/v1alpha1\nkind: ClusterServiceVersion\nmetadata: {name: skein.v0.0.0}\n"

func TestBuildCSV(t *testing.T) {
	webhook := func(policy, service string) string {
		return fmt.Sprintf(podWebhook, policy, service)
	}
	for _, tc := range []struct {
		name, base, rendered, wantErr string
	}{
		{"a minimal config", base, minimal, ""},
		{"the injector's namespaceSelector with failurePolicy Ignore", base, minimal + webhook("Ignore", "skein-webhook-service"), ""},
		{"a namespaceSelector with failurePolicy Fail", base, minimal + webhook("Fail", "skein-webhook-service"),
			"webhook pods.mesh.skein.dev of skein-mutating has a namespaceSelector and failurePolicy Fail"},
		{"a webhook whose Service is missing", base, minimal + webhook("Ignore", "nowhere"),
			"names the Service nowhere, which config/default does not hold"},
		{"two Deployments", base, minimal + "---\n" + strings.SplitN(minimal, "---", 2)[0], "renders 2 Deployments"},
		{"an untagged image", base, strings.Replace(minimal, ":v1.2.3", "", 1), "has no tag"},
		{"a misspelt field in the CSV base", base + "spec: {keyword: [mesh]}\n", minimal, "parsing the CSV base"},
		{"an object the bundle cannot hold", base, minimal + "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\n",
			"renders Job migrate, which the bundle generator does not know where to put"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := build(t, tc.base, tc.rendered)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("want an error saying %q, got %v", tc.wantErr, err)
			}
		})
	}
}

func TestWords(t *testing.T) {
	for in, want := range map[string]string{"workloadIPs": "Workload IPs", "MeshConfig": "Mesh Config", "meshTLS": "Mesh TLS", "latencyP50": "Latency P50"} {
		if got := words(in); got != want {
			t.Errorf("words(%q) = %q, want %q", in, got, want)
		}
	}
}
