package bundle

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/operator-framework/api/pkg/lib/version"
)

// OLMWebhookCertDir is where OLM mounts the serving certificate it makes for a CSV's webhooks
// (tls.crt, tls.key); the operator's --webhook-cert-dir points there in the bundle.
const OLMWebhookCertDir = "/tmp/k8s-webhook-server/serving-certs"

// objects indexes the rendered config by kind and name.
type objects struct {
	all []*unstructured.Unstructured
}

func (o objects) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, obj := range o.all {
		if obj.GetKind() == kind {
			out = append(out, obj)
		}
	}
	return out
}

func (o objects) find(kind, name string) *unstructured.Unstructured {
	for _, obj := range o.ofKind(kind) {
		if obj.GetName() == name {
			return obj
		}
	}
	return nil
}

func convert(obj *unstructured.Unstructured, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		return fmt.Errorf("reading %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// buildCSV fills the CSV base from the rendered config and returns it with the objects that go into
// the bundle beside it. Whatever the CSV takes over (the Deployment, its ServiceAccount and RBAC, the
// webhooks and their Service and certificates) is not among them: OLM makes those from the CSV.
func buildCSV(base, icon []byte, rendered []*unstructured.Unstructured, crds []crdFile, samples []*unstructured.Unstructured) (*operatorsv1alpha1.ClusterServiceVersion, []*unstructured.Unstructured, error) {
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	if err := yaml.UnmarshalStrict(base, csv); err != nil {
		return nil, nil, fmt.Errorf("parsing the CSV base: %w", err)
	}
	objs := objects{all: rendered}
	taken := map[*unstructured.Unstructured]bool{}

	deploys := objs.ofKind("Deployment")
	if len(deploys) != 1 {
		return nil, nil, fmt.Errorf("config/default renders %d Deployments; the bundle expects exactly one, the control plane", len(deploys))
	}
	taken[deploys[0]] = true
	deploy := &appsv1.Deployment{}
	if err := convert(deploys[0], deploy); err != nil {
		return nil, nil, err
	}
	if len(deploy.Spec.Template.Spec.Containers) == 0 {
		return nil, nil, fmt.Errorf("Deployment %s has no container", deploy.Name)
	}
	image := deploy.Spec.Template.Spec.Containers[0].Image
	ver, err := imageVersion(image)
	if err != nil {
		return nil, nil, err
	}
	csv.Name = Package + ".v" + ver.String()
	csv.Spec.Version = ver
	if csv.Annotations == nil {
		csv.Annotations = map[string]string{}
	}
	csv.Annotations["containerImage"] = image
	csv.Spec.RelatedImages = []operatorsv1alpha1.RelatedImage{{Name: "skein-controller", Image: image}}
	csv.Spec.Icon = []operatorsv1alpha1.Icon{{Data: base64.StdEncoding.EncodeToString(icon), MediaType: "image/svg+xml"}}

	sa := deploy.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		return nil, nil, fmt.Errorf("Deployment %s names no serviceAccountName", deploy.Name)
	}
	if obj := objs.find("ServiceAccount", sa); obj != nil {
		taken[obj] = true
	}
	strategy := operatorsv1alpha1.StrategyDetailsDeployment{}
	if strategy.Permissions, strategy.ClusterPermissions, err = permissions(objs, sa, taken); err != nil {
		return nil, nil, err
	}
	certDirs := dropCertManagerVolumes(objs, deploy, taken)
	for i := range deploy.Spec.Template.Spec.Containers {
		c := &deploy.Spec.Template.Spec.Containers[i]
		for j, arg := range c.Args {
			for _, dir := range certDirs {
				c.Args[j] = strings.ReplaceAll(arg, dir, OLMWebhookCertDir)
			}
		}
	}
	strategy.DeploymentSpecs = []operatorsv1alpha1.StrategyDeploymentSpec{{Name: deploy.Name, Label: deploy.Labels, Spec: deploy.Spec}}
	csv.Spec.InstallStrategy = operatorsv1alpha1.NamedInstallStrategy{StrategyName: operatorsv1alpha1.InstallStrategyNameDeployment, StrategySpec: strategy}

	if csv.Spec.WebhookDefinitions, err = webhookDefinitions(objs, deploy, taken); err != nil {
		return nil, nil, err
	}
	// The base may list the objects each CRD's controller works with; the rest comes from the CRDs.
	resources := map[string][]operatorsv1alpha1.APIResourceReference{}
	for _, d := range csv.Spec.CustomResourceDefinitions.Owned {
		resources[d.Name] = d.Resources
	}
	csv.Spec.CustomResourceDefinitions.Owned = nil
	for _, crd := range crds {
		desc, err := ownedCRD(crd.obj)
		if err != nil {
			return nil, nil, err
		}
		desc.Resources = resources[desc.Name]
		delete(resources, desc.Name)
		csv.Spec.CustomResourceDefinitions.Owned = append(csv.Spec.CustomResourceDefinitions.Owned, desc)
	}
	for name := range resources {
		return nil, nil, fmt.Errorf("the CSV base describes the CRD %s, which config/crd/bases does not hold", name)
	}
	related := map[string]string{}
	for _, crd := range crds {
		if err := relatedImages(crd.obj, related); err != nil {
			return nil, nil, err
		}
	}
	for _, image := range sortedKeys(related) {
		csv.Spec.RelatedImages = append(csv.Spec.RelatedImages, operatorsv1alpha1.RelatedImage{Name: related[image], Image: image})
	}
	examples := make([]map[string]any, 0, len(samples))
	for _, s := range samples {
		examples = append(examples, s.Object)
	}
	ex, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	csv.Annotations["alm-examples"] = string(ex)

	extras, err := bundleObjects(objs, taken)
	if err != nil {
		return nil, nil, err
	}
	return csv, extras, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// imageVersion is the semantic version of an image's tag (ghcr.io/x/y:v0.1.0 is 0.1.0).
func imageVersion(image string) (version.OperatorVersion, error) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return version.OperatorVersion{}, fmt.Errorf("the controller image %q has no tag: set one in config/manager/kustomization.yaml", image)
	}
	v := version.OperatorVersion{}
	if err := v.UnmarshalJSON([]byte(`"` + strings.TrimPrefix(image[i+1:], "v") + `"`)); err != nil {
		return v, fmt.Errorf("the controller image's tag %q is not a semantic version: %w", image[i+1:], err)
	}
	return v, nil
}

// permissions turns the roles bound to the ServiceAccount sa into the CSV's permissions
// (namespaced, granted in the install namespace) and clusterPermissions.
func permissions(objs objects, sa string, taken map[*unstructured.Unstructured]bool) (ns, cluster []operatorsv1alpha1.StrategyDeploymentPermissions, err error) {
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, obj := range objs.ofKind(kind) {
			b := &rbacv1.RoleBinding{}
			if err := convert(obj, b); err != nil {
				return nil, nil, err
			}
			if !bindsServiceAccount(b.Subjects, sa) {
				continue
			}
			role := objs.find(b.RoleRef.Kind, b.RoleRef.Name)
			if role == nil {
				return nil, nil, fmt.Errorf("%s %s grants %s %s, which config/default does not hold", kind, b.Name, b.RoleRef.Kind, b.RoleRef.Name)
			}
			r := &rbacv1.ClusterRole{}
			if err := convert(role, r); err != nil {
				return nil, nil, err
			}
			taken[obj], taken[role] = true, true
			p := operatorsv1alpha1.StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: r.Rules}
			if kind == "RoleBinding" {
				ns = append(ns, p)
			} else {
				cluster = append(cluster, p)
			}
		}
	}
	if len(cluster)+len(ns) == 0 {
		return nil, nil, fmt.Errorf("no role in config/default is bound to the ServiceAccount %s", sa)
	}
	return ns, cluster, nil
}

func bindsServiceAccount(subjects []rbacv1.Subject, sa string) bool {
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa {
			return true
		}
	}
	return false
}

// dropCertManagerVolumes removes the Deployment's volumes of Secrets that cert-manager Certificates
// fill, with their mounts, and returns the mount paths: OLM mounts its own serving certificate.
func dropCertManagerVolumes(objs objects, deploy *appsv1.Deployment, taken map[*unstructured.Unstructured]bool) []string {
	secrets := map[string]bool{}
	for _, obj := range objs.all {
		if strings.HasPrefix(obj.GetAPIVersion(), "cert-manager.io/") {
			taken[obj] = true
			if name, _, _ := unstructured.NestedString(obj.Object, "spec", "secretName"); name != "" {
				secrets[name] = true
			}
		}
	}
	pod := &deploy.Spec.Template.Spec
	dropped := map[string]bool{}
	var volumes []corev1.Volume
	for _, v := range pod.Volumes {
		if v.Secret != nil && secrets[v.Secret.SecretName] {
			dropped[v.Name] = true
			continue
		}
		volumes = append(volumes, v)
	}
	pod.Volumes = volumes
	var dirs []string
	for i := range pod.Containers {
		c := &pod.Containers[i]
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if dropped[m.Name] {
				dirs = append(dirs, m.MountPath)
				continue
			}
			mounts = append(mounts, m)
		}
		c.VolumeMounts = mounts
	}
	return dirs
}

// webhookDefinitions turns every admission webhook configuration into the CSV's webhook
// definitions, served by deploy at the port its webhook Service forwards to.
func webhookDefinitions(objs objects, deploy *appsv1.Deployment, taken map[*unstructured.Unstructured]bool) ([]operatorsv1alpha1.WebhookDescription, error) {
	var defs []operatorsv1alpha1.WebhookDescription
	types := map[string]operatorsv1alpha1.WebhookAdmissionType{
		"ValidatingWebhookConfiguration": operatorsv1alpha1.ValidatingAdmissionWebhook,
		"MutatingWebhookConfiguration":   operatorsv1alpha1.MutatingAdmissionWebhook,
	}
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		for _, obj := range objs.ofKind(kind) {
			taken[obj] = true
			// A validating webhook's fields are a mutating one's less reinvocationPolicy, so one
			// type reads both.
			cfg := &admissionv1.MutatingWebhookConfiguration{}
			if err := convert(obj, cfg); err != nil {
				return nil, err
			}
			for _, w := range cfg.Webhooks {
				d, err := webhookDefinition(objs, deploy, cfg.Name, w.Name, w.ClientConfig, taken)
				if err != nil {
					return nil, err
				}
				d.Type = types[kind]
				d.Rules, d.FailurePolicy, d.MatchPolicy, d.ObjectSelector = w.Rules, w.FailurePolicy, w.MatchPolicy, w.ObjectSelector
				d.SideEffects, d.TimeoutSeconds, d.AdmissionReviewVersions = w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions
				d.ReinvocationPolicy = w.ReinvocationPolicy
				if err := namespaceSelectorDroppable(w, cfg.Name); err != nil {
					return nil, err
				}
				defs = append(defs, d)
			}
		}
	}
	return defs, nil
}

// namespaceSelectorDroppable tells whether the bundle may leave out a webhook's namespaceSelector.
// A CSV cannot carry one: OLM sets it from the OperatorGroup's namespaces (every namespace for
// AllNamespaces). A selector that keeps a webhook away from namespaces whose pods must start anyway
// (the control plane's, kube-system) may go when the webhook's failurePolicy is Ignore, as an
// unanswered call then blocks nothing; with Fail, dropping it could lock the control plane out of
// starting, so the generator refuses.
func namespaceSelectorDroppable(w admissionv1.MutatingWebhook, config string) error {
	sel := w.NamespaceSelector
	if sel == nil || len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		return nil
	}
	if w.FailurePolicy != nil && *w.FailurePolicy == admissionv1.Ignore {
		return nil
	}
	return fmt.Errorf("webhook %s of %s has a namespaceSelector and failurePolicy Fail: a CSV cannot carry the selector (OLM sets it), "+
		"and without it the webhook would judge every namespace's objects; use an objectSelector, or failurePolicy Ignore", w.Name, config)
}

// webhookDefinition is what a webhook's clientConfig says of where it is served, the same for both
// admission types.
func webhookDefinition(objs objects, deploy *appsv1.Deployment, config, name string, cc admissionv1.WebhookClientConfig, taken map[*unstructured.Unstructured]bool) (operatorsv1alpha1.WebhookDescription, error) {
	d := operatorsv1alpha1.WebhookDescription{GenerateName: name, DeploymentName: deploy.Name}
	if cc.Service == nil {
		return d, fmt.Errorf("webhook %s of %s has no clientConfig.service: OLM serves webhooks through a Service of the operator's Deployment", name, config)
	}
	svcObj := objs.find("Service", cc.Service.Name)
	if svcObj == nil {
		return d, fmt.Errorf("webhook %s of %s names the Service %s, which config/default does not hold", name, config, cc.Service.Name)
	}
	taken[svcObj] = true
	svc := &corev1.Service{}
	if err := convert(svcObj, svc); err != nil {
		return d, err
	}
	port := int32(443)
	if cc.Service.Port != nil {
		port = *cc.Service.Port
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != port {
			continue
		}
		target, err := containerPort(deploy, p.TargetPort)
		if err != nil {
			return d, fmt.Errorf("webhook %s of %s: %w", name, config, err)
		}
		d.ContainerPort, d.TargetPort, d.WebhookPath = port, &target, cc.Service.Path
		return d, nil
	}
	return d, fmt.Errorf("webhook %s of %s calls port %d of Service %s, which has no such port", name, config, port, svc.Name)
}

// containerPort resolves a Service's targetPort (by name or number) to the container port number.
func containerPort(deploy *appsv1.Deployment, target intstr.IntOrString) (intstr.IntOrString, error) {
	if target.Type == intstr.Int {
		return target, nil
	}
	for _, c := range deploy.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == target.StrVal {
				return intstr.FromInt32(p.ContainerPort), nil
			}
		}
	}
	return target, fmt.Errorf("no container of Deployment %s has a port named %q", deploy.Name, target.StrVal)
}

// bundleKinds are the kinds OLM installs from a bundle beside the CSV that config/default renders.
var bundleKinds = map[string]bool{"Service": true, "ClusterRole": true, "Role": true, "ConfigMap": true}

// bundleObjects are the rendered objects the CSV did not take over, without a namespace (OLM puts
// them in the install namespace), sorted by kind and name.
func bundleObjects(objs objects, taken map[*unstructured.Unstructured]bool) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, obj := range objs.all {
		switch {
		case taken[obj], obj.GetKind() == "Namespace", obj.GetKind() == "CustomResourceDefinition":
			// The CSV holds it, OLM chooses the namespace, and the CRDs come from config/crd/bases.
			continue
		case !bundleKinds[obj.GetKind()]:
			return nil, fmt.Errorf("config/default renders %s %s, which the bundle generator does not know where to put", obj.GetKind(), obj.GetName())
		}
		obj = obj.DeepCopy()
		obj.SetNamespace("")
		out = append(out, obj)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetKind() != out[j].GetKind() {
			return out[i].GetKind() < out[j].GetKind()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}
