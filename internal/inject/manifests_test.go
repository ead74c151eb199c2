package inject

import (
	"bytes"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
---
# an empty document and a List with an opted-out pod, a Service and a CronJob
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "optout", "namespace": "app",
    "annotations": {"mesh.skein.dev/inject": "disabled"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
  {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "app"},
   "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
     "containers": [{"name": "job", "image": "job"}]}}}}}}
]}
`

func TestManifests(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	lookup := func(name string) (Namespace, error) { return Namespace{Name: name, Annotations: enabled}, nil }
	results, err := testConfig().Manifests(strings.NewReader(manifest), &out, lookup)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(results).To(HaveLen(3))
	g.Expect(results[0].Object).To(Equal("deployment/web"))
	g.Expect(results[0].Inject).To(BeTrue())
	g.Expect(results[1].Object).To(Equal("pod/optout"))
	g.Expect(results[1].Inject).To(BeFalse())
	g.Expect(results[2].Object).To(Equal("cronjob/nightly"))
	g.Expect(results[2].Inject).To(BeTrue())

	docs := strings.Split(out.String(), "\n---\n")
	g.Expect(docs).To(HaveLen(2), "the empty document is dropped")
	deploy := &appsv1.Deployment{}
	g.Expect(yaml.UnmarshalStrict([]byte(docs[0]), deploy)).To(Succeed())
	g.Expect(meshv1.IsMeshed(&corev1.Pod{Spec: deploy.Spec.Template.Spec})).To(BeTrue())
	g.Expect(deploy.Spec.Template.Labels).To(Equal(map[string]string{"app": "web"}))
	g.Expect(deploy.Spec.Template.Annotations).To(HaveKeyWithValue(ScrapeAnnotation, "true"))

	// The same, injected directly, is what the manifest's template became.
	want := &corev1.PodTemplateSpec{}
	want.Labels = map[string]string{"app": "web"}
	want.Spec.Containers = []corev1.Container{{Name: "web", Image: "web"}}
	_, err = testConfig().Inject(&want.ObjectMeta, &want.Spec, Namespace{Name: "app", Annotations: enabled})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(deploy.Spec.Template).To(Equal(*want))

	list := &corev1.List{}
	g.Expect(yaml.Unmarshal([]byte(docs[1]), list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(3))
	pod := &corev1.Pod{}
	g.Expect(yaml.Unmarshal(list.Items[0].Raw, pod)).To(Succeed())
	g.Expect(meshv1.IsMeshed(pod)).To(BeFalse())
	g.Expect(pod.Annotations).NotTo(HaveKey(ScrapeAnnotation))
	cron := &batchv1.CronJob{}
	g.Expect(yaml.Unmarshal(list.Items[2].Raw, cron)).To(Succeed())
	g.Expect(meshv1.IsMeshed(&corev1.Pod{Spec: cron.Spec.JobTemplate.Spec.Template.Spec})).To(BeTrue())
	g.Expect(cron.Spec.Schedule).To(Equal("@daily"))
}

func TestManifestErrorsNameTheObject(t *testing.T) {
	g := NewWithT(t)
	in := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "annotations": {"config.mesh.skein.dev/proxy-log-level": "loud"}},
"spec": {"containers": [{"name": "a", "image": "a"}]}}`
	lookup := func(name string) (Namespace, error) { return Namespace{Name: name, Annotations: enabled}, nil }
	_, err := testConfig().Manifests(strings.NewReader(in), &bytes.Buffer{}, lookup)
	g.Expect(err).To(MatchError(ContainSubstring("document 1: pod/web: annotation config.mesh.skein.dev/proxy-log-level")))

	_, err = testConfig().Manifests(strings.NewReader("kind: Deployment\nmetadata: {name: web}\n"), &bytes.Buffer{}, lookup)
	g.Expect(err).To(MatchError(ContainSubstring("deployment/web: spec is missing")))
}
