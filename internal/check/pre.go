package check

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
)

// MinKubernetes is the oldest Kubernetes Skein supports (the CSV's minKubeVersion).
const MinKubernetes = "1.30.0"

// Pre are the checks of a cluster before Skein is installed in it.
func Pre() []Check {
	return []Check{
		{categoryAPI, "can reach the API server", apiReachable},
		{categoryAPI, "is running a supported Kubernetes version", kubernetesVersion},
		{"pre-install", "can create CustomResourceDefinitions", canCreate("apiextensions.k8s.io", "customresourcedefinitions")},
		{"pre-install", "can create Namespaces", canCreate("", "namespaces")},
		{"pre-install", "can create ClusterRoles", canCreate("rbac.authorization.k8s.io", "clusterroles")},
		{"pre-install", "can create ClusterRoleBindings", canCreate("rbac.authorization.k8s.io", "clusterrolebindings")},
		{"pre-install", "can create admission webhook configurations", canCreate("admissionregistration.k8s.io", "validatingwebhookconfigurations")},
		{categoryCertManager, "cert-manager is installed", crdsEstablished(certManagerCRDs, "install cert-manager first: Skein takes its trust anchor and issuer from it")},
	}
}

func kubernetesVersion(ctx context.Context, e *Env) []Result {
	info, err := e.Clientset.Discovery().ServerVersion()
	if err != nil {
		return fail(err.Error(), "")
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return fail(fmt.Sprintf("cannot read the version %q: %v", info.GitVersion, err), "")
	}
	if v.LessThan(version.MustParseGeneric(MinKubernetes)) {
		return fail(fmt.Sprintf("Kubernetes %s is older than %s", info.GitVersion, MinKubernetes), "upgrade the cluster")
	}
	return ok(info.GitVersion)
}

// canCreate asks the API server whether the current user may create resource, cluster-wide.
func canCreate(group, resource string) func(context.Context, *Env) []Result {
	return func(ctx context.Context, e *Env) []Result {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Group: group, Resource: resource},
		}}
		got, err := e.Clientset.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fail(err.Error(), "")
		}
		if !got.Status.Allowed {
			return fail("not allowed "+got.Status.Reason, "installing Skein takes a cluster administrator: use such a kubeconfig")
		}
		return ok("")
	}
}
