package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/inject"
)

const (
	categoryAPI          = "kubernetes-api"
	categoryCRDs         = "skein-crds"
	categoryControlPlane = "control-plane"
	categoryWebhooks     = "admission-webhooks"
	categoryCertManager  = "cert-manager"
	categoryCertificates = "certificates"
	categoryDataPlane    = "data-plane"
)

// DeploymentName is the control plane's Deployment, as config/default and the bundle name it.
const DeploymentName = "skein-controller"

// AnchorWarning is how long before a trust anchor expires that check warns: rotating one takes a
// workload certificate lifetime at least, and a person to plan it.
const AnchorWarning = 30 * 24 * time.Hour

// IssuerWarning is how long before the identity issuer expires that check warns: cert-manager
// renews it a day ahead by default, so an issuer this close to its end was not renewed.
const IssuerWarning = time.Hour

var skeinCRDs = []string{
	"meshconfigs.mesh.skein.dev", "trafficsplits.mesh.skein.dev", "links.mesh.skein.dev",
	"externalworkloads.mesh.skein.dev", "meshstatuses.mesh.skein.dev",
}

var certManagerCRDs = []string{
	"certificates.cert-manager.io", "issuers.cert-manager.io", "clusterissuers.cert-manager.io",
}

// requiredWebhooks are the admission webhooks the control plane serves that must be registered.
var requiredWebhooks = []string{"trafficsplits.mesh.skein.dev"}

// Installed are the checks of a cluster Skein is installed in.
func Installed() []Check {
	return []Check{
		{categoryAPI, "can reach the API server", apiReachable},
		{categoryCRDs, "the Skein CRDs are established", crdsEstablished(skeinCRDs, "install Skein: `make deploy`, or its OLM bundle")},
		{categoryControlPlane, "the control plane is available", controlPlaneDeployment},
		{categoryControlPlane, "the MeshConfig is Ready", meshConfigReady},
		{categoryControlPlane, "the identity service answers", serviceAnswers(inject.IdentityService, func(e *Env) string { return e.IdentityAddr })},
		{categoryControlPlane, "the xDS service answers", serviceAnswers(inject.XDSService, func(e *Env) string { return e.XDSAddr })},
		{categoryWebhooks, "the admission webhooks", webhooks},
		{categoryCertManager, "cert-manager's CRDs are established", crdsEstablished(certManagerCRDs, "install cert-manager, then Skein")},
		{categoryCertManager, "the trust anchor Certificate is Ready", certificateReady(meshv1.TrustAnchorName)},
		{categoryCertManager, "the identity issuer Certificate is Ready", certificateReady(meshv1.IssuerName)},
		{categoryCertificates, "the trust anchors are valid", trustAnchorsValid},
		{categoryCertificates, "the identity issuer is valid", issuerValid},
		{categoryDataPlane, "the meshed proxies are connected", proxiesConnected},
		{categoryDataPlane, "the meshed proxies run the configured image", proxyVersions},
		{categoryMulticluster, "the multicluster gateway is available", gatewayAvailable},
		{categoryMulticluster, "the Links to other clusters are Ready", linksReady},
	}
}

func apiReachable(ctx context.Context, e *Env) []Result {
	v, err := e.Clientset.Discovery().ServerVersion()
	if err != nil {
		return fail(err.Error(), "check the kubeconfig (--kubeconfig, KUBECONFIG) and that the API server runs")
	}
	return ok("Kubernetes " + v.GitVersion)
}

func crdsEstablished(names []string, hint string) func(context.Context, *Env) []Result {
	return func(ctx context.Context, e *Env) []Result {
		var missing []string
		for _, name := range names {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := e.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				missing = append(missing, name)
				continue
			}
			established := false
			for _, c := range crd.Status.Conditions {
				established = established || c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
			}
			if !established {
				missing = append(missing, name+" (not established)")
			}
		}
		if len(missing) > 0 {
			return fail("missing: "+strings.Join(missing, ", "), hint)
		}
		return ok("")
	}
}

func controlPlaneDeployment(ctx context.Context, e *Env) []Result {
	d := &appsv1.Deployment{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: DeploymentName}, d)
	switch {
	case apierrors.IsNotFound(err) && e.IdentityAddr != "":
		return ok("outside the cluster (no Deployment " + DeploymentName + "), at " + e.IdentityAddr)
	case apierrors.IsNotFound(err):
		return fail(fmt.Sprintf("no Deployment %s in %s", DeploymentName, e.Namespace),
			"install Skein (`make deploy`, or its OLM bundle); for a control plane outside the cluster, give --identity-addr and --xds-addr")
	case err != nil:
		return fail(err.Error(), "")
	case d.Status.AvailableReplicas == 0:
		return fail(fmt.Sprintf("0 of %d replicas available", ptrValue(d.Spec.Replicas)),
			fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", e.Namespace, DeploymentName, e.Namespace, DeploymentName))
	}
	return ok(fmt.Sprintf("Deployment %s: %d of %d replicas available", DeploymentName, d.Status.AvailableReplicas, ptrValue(d.Spec.Replicas)))
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func meshConfigReady(ctx context.Context, e *Env) []Result {
	mc := &meshv1.MeshConfig{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		return fail(err.Error(), "create it: kubectl apply -f config/samples/mesh_v1alpha1_meshconfig.yaml (every field has a default)")
	}
	c := meta.FindStatusCondition(mc.Status.Conditions, meshv1.ConditionReady)
	switch {
	case c == nil:
		return fail("no Ready condition: the control plane has not reconciled it", "check that the control plane runs")
	case c.Status != metav1.ConditionTrue:
		return fail(fmt.Sprintf("%s: %s", c.Reason, c.Message), "kubectl describe meshconfig default")
	}
	return ok("")
}

// serviceAnswers checks a control-plane service: at addr(e), with a TLS handshake whose
// certificate must chain to the trust bundle; else through its Service's ready endpoints.
func serviceAnswers(service string, addr func(*Env) string) func(context.Context, *Env) []Result {
	return func(ctx context.Context, e *Env) []Result {
		serverName := inject.ServiceHost(service, e.Namespace)
		if a := addr(e); a != "" {
			roots, _, err := trustBundle(ctx, e)
			if err != nil {
				return fail(err.Error(), "the control plane writes the trust bundle once the MeshConfig is Ready")
			}
			if err := handshake(a, serverName, roots); err != nil {
				return fail(err.Error(), "the control plane is down or unreachable at "+a+": check its process or pods and their logs")
			}
			return ok("TLS as " + serverName + " at " + a)
		}
		n, err := readyEndpoints(ctx, e, e.Namespace, service)
		if err != nil || n == 0 {
			return fail(fmt.Sprintf("Service %s/%s has no ready endpoint (%v)", e.Namespace, service, err),
				fmt.Sprintf("the control plane's pods are not ready: kubectl -n %s get pods -l control-plane=skein-controller", e.Namespace))
		}
		return ok(fmt.Sprintf("%d ready endpoints", n))
	}
}

func handshake(addr, serverName string, roots *x509.CertPool) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	return conn.Close()
}

func readyEndpoints(ctx context.Context, e *Env, ns, service string) (int, error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := e.Client.List(ctx, slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// webhooks checks that every required webhook is registered, and that each of Skein's webhooks has
// a CA bundle and something answering it.
func webhooks(ctx context.Context, e *Env) []Result {
	type hook struct {
		name, kind, config string
		cc                 admissionv1.WebhookClientConfig
	}
	var hooks []hook
	validating := &admissionv1.ValidatingWebhookConfigurationList{}
	mutating := &admissionv1.MutatingWebhookConfigurationList{}
	if err := e.Client.List(ctx, validating); err != nil {
		return fail(err.Error(), "")
	}
	if err := e.Client.List(ctx, mutating); err != nil {
		return fail(err.Error(), "")
	}
	for _, c := range validating.Items {
		for _, w := range c.Webhooks {
			hooks = append(hooks, hook{w.Name, "validatingwebhookconfiguration", c.Name, w.ClientConfig})
		}
	}
	for _, c := range mutating.Items {
		for _, w := range c.Webhooks {
			hooks = append(hooks, hook{w.Name, "mutatingwebhookconfiguration", c.Name, w.ClientConfig})
		}
	}
	var results []Result
	for _, name := range requiredWebhooks {
		if !slices.ContainsFunc(hooks, func(h hook) bool { return h.name == name }) {
			results = append(results, Result{Name: "webhook " + name + " is registered", Status: Fail,
				Message: "no webhook configuration holds it, so the API server does not consult the control plane",
				Hint:    "reinstall Skein's webhook configuration: kubectl apply --server-side -k config/default (OLM recreates it from the CSV)"})
		}
	}
	// Each of Skein's webhooks, in every configuration that holds one, by name then configuration.
	sort.Slice(hooks, func(i, j int) bool {
		return hooks[i].name < hooks[j].name || hooks[i].name == hooks[j].name && hooks[i].config < hooks[j].config
	})
	for _, h := range hooks {
		if !strings.HasSuffix(h.name, ".mesh.skein.dev") {
			continue
		}
		r := Result{Name: "webhook " + h.name + " of " + h.config + " answers", Status: OK}
		if err := webhookAnswers(ctx, e, h.cc); err != nil {
			r.Status, r.Message = Fail, err.Error()
			r.Hint = "cert-manager's CA injector (or OLM) fills caBundle; the control plane serves the webhook: check that both run, and `kubectl describe " +
				h.kind + " " + h.config + "`"
		}
		results = append(results, r)
	}
	return results
}

func webhookAnswers(ctx context.Context, e *Env, cc admissionv1.WebhookClientConfig) error {
	if len(cc.CABundle) == 0 {
		return errors.New("no caBundle: the API server cannot trust the webhook's certificate")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cc.CABundle) {
		return errors.New("caBundle holds no PEM certificate")
	}
	if cc.Service != nil {
		n, err := readyEndpoints(ctx, e, cc.Service.Namespace, cc.Service.Name)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("Service %s/%s has no ready endpoint", cc.Service.Namespace, cc.Service.Name)
		}
		return nil
	}
	if cc.URL == nil {
		return errors.New("clientConfig has neither a Service nor a URL")
	}
	u, err := url.Parse(*cc.URL)
	if err != nil {
		return err
	}
	return handshake(u.Host, u.Hostname(), roots)
}

func certificateReady(name string) func(context.Context, *Env) []Result {
	return func(ctx context.Context, e *Env) []Result {
		if name == meshv1.TrustAnchorName {
			mc := &meshv1.MeshConfig{}
			if err := e.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err == nil && mc.Spec.Identity.TrustAnchor.SecretName != "" {
				return ok("none: the anchor is brought in Secret " + mc.Spec.Identity.TrustAnchor.SecretName)
			}
		}
		cert := &cmv1.Certificate{}
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: name}, cert); err != nil {
			return fail(err.Error(), "the control plane makes it for the MeshConfig: check that both cert-manager and the control plane run")
		}
		for _, c := range cert.Status.Conditions {
			if c.Type == cmv1.CertificateConditionReady {
				if c.Status == cmmeta.ConditionTrue {
					return ok("")
				}
				return fail(fmt.Sprintf("%s: %s", c.Reason, c.Message), fmt.Sprintf("kubectl -n %s describe certificate %s", e.Namespace, name))
			}
		}
		return fail("cert-manager has not reported on it", "check that cert-manager runs")
	}
}

// trustBundle reads the trust bundle ConfigMap.
func trustBundle(ctx context.Context, e *Env) (*x509.CertPool, []*x509.Certificate, error) {
	cm := &corev1.ConfigMap{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: meshv1.TrustBundleName}, cm); err != nil {
		return nil, nil, fmt.Errorf("reading the trust bundle: %w", err)
	}
	certs, err := identity.ParseCertificates([]byte(cm.Data[meshv1.TrustBundleKey]))
	if err != nil || len(certs) == 0 {
		return nil, nil, fmt.Errorf("the trust bundle %s/%s holds no certificate (%v)", e.Namespace, meshv1.TrustBundleName, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}

func trustAnchorsValid(ctx context.Context, e *Env) []Result {
	_, anchors, err := trustBundle(ctx, e)
	if err != nil {
		return fail(err.Error(), "the control plane writes it once the MeshConfig is Ready")
	}
	soonest := anchors[0]
	for _, a := range anchors {
		if a.NotAfter.Before(soonest.NotAfter) {
			soonest = a
		}
	}
	left := soonest.NotAfter.Sub(e.Now)
	msg := fmt.Sprintf("%d in the bundle; %q expires %s", len(anchors), soonest.Subject.CommonName, soonest.NotAfter.UTC().Format(time.RFC3339))
	switch {
	case left <= 0:
		return fail(msg+": expired, so no proxy trusts another", "rotate the trust anchor now: see README, Identity and mTLS")
	case left < AnchorWarning:
		return warn(msg+fmt.Sprintf(": within %d days", int(AnchorWarning.Hours()/24)), "plan the anchor's rotation: a new anchor joins the bundle beside the old one for a workload certificate lifetime")
	}
	return ok(msg)
}

func issuerValid(ctx context.Context, e *Env) []Result {
	s := &corev1.Secret{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: meshv1.IssuerName}, s); err != nil {
		return fail(err.Error(), "cert-manager writes it for the issuer Certificate: check that cert-manager runs")
	}
	certs, err := identity.ParseCertificates(s.Data[corev1.TLSCertKey])
	if err != nil || len(certs) == 0 {
		return fail(fmt.Sprintf("Secret %s/%s holds no certificate (%v)", e.Namespace, meshv1.IssuerName, err), "check that cert-manager runs")
	}
	issuer := certs[0]
	left := issuer.NotAfter.Sub(e.Now)
	msg := "expires " + issuer.NotAfter.UTC().Format(time.RFC3339)
	renew := fmt.Sprintf("cert-manager renews it: check that it runs, and `kubectl -n %s describe certificate %s`", e.Namespace, meshv1.IssuerName)
	switch {
	case left <= 0:
		return fail("expired "+issuer.NotAfter.UTC().Format(time.RFC3339)+": the identity service cannot sign workload certificates", renew)
	case left < IssuerWarning:
		return warn(msg+": within the hour, so it was not renewed", renew)
	}
	return ok(msg)
}

func proxiesConnected(ctx context.Context, e *Env) []Result {
	ms := &meshv1.MeshStatus{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshStatusName}, ms); err != nil {
		return warn(err.Error(), "the control plane makes MeshStatus default: check that it runs")
	}
	meshed, connected := ms.Status.MeshedPods, ms.Status.ConnectedProxies
	switch {
	case meshed == 0:
		return ok("no meshed pods yet")
	case connected < meshed:
		return warn(fmt.Sprintf("%d of %d meshed pods' proxies are connected to the control plane", connected, meshed),
			fmt.Sprintf("kubectl logs <pod> -c %s: the proxy reaches skein-xds.%s.svc:8087", meshv1.ProxyContainerName, e.Namespace))
	}
	return ok(fmt.Sprintf("%d of %d", connected, meshed))
}

func proxyVersions(ctx context.Context, e *Env) []Result {
	mc := &meshv1.MeshConfig{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		return warn(err.Error(), "")
	}
	pods := &corev1.PodList{}
	if err := e.Client.List(ctx, pods); err != nil {
		return fail(err.Error(), "")
	}
	meshed, stale := 0, []string{}
	for _, p := range pods.Items {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if c.Name != meshv1.ProxyContainerName {
				continue
			}
			meshed++
			if want := mc.Spec.Proxy.Image; want != "" && c.Image != want {
				stale = append(stale, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, c.Image))
			}
		}
	}
	switch {
	case meshed == 0:
		return ok("no meshed pods yet")
	case len(stale) > 0:
		n := len(stale)
		if n > 3 {
			stale = append(stale[:3], fmt.Sprintf("and %d more", n-3))
		}
		return warn(fmt.Sprintf("%d proxies run another image than %s: %s", n, mc.Spec.Proxy.Image, strings.Join(stale, ", ")),
			"restart those workloads (kubectl rollout restart) so the injector gives them the configured proxy")
	}
	return ok(fmt.Sprintf("%d meshed pods", meshed))
}
