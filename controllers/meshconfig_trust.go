package controllers

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
)

// The trust chain: a trust anchor (made by cert-manager, or brought by the user), a CA Issuer backed
// by it, the identity issuer Certificate that cert-manager signs with it and renews, and the trust
// bundle ConfigMap that proxies verify their peers against.

// retiredAnnotationPrefix marks, on the trust bundle, when an anchor left the anchor Secret; it stays
// in the bundle for one workload certificate lifetime more, so that A -> A+B -> B breaks nobody.
const retiredAnnotationPrefix = "mesh.skein.dev/retired-"

// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates;issuers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=clusterissuers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete

// reconcileTrustAnchor has cert-manager make a self-signed trust anchor, unless the user brings one,
// and backs a CA Issuer with it.
func (r *MeshConfigReconciler) reconcileTrustAnchor(ctx context.Context, mc *meshv1.MeshConfig) (bool, string, error) {
	anchor := mc.Spec.Identity.TrustAnchor
	if anchor.SecretName == "" {
		ci := &cmv1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: meshv1.SelfSignedIssuerName}}
		if err := r.apply(ctx, mc, ci, func() { ci.Spec.IssuerConfig = cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}} }); err != nil {
			return false, "", err
		}
		cert := &cmv1.Certificate{ObjectMeta: r.meta(meshv1.TrustAnchorName)}
		err := r.apply(ctx, mc, cert, func() {
			cert.Spec = caCertificate("root."+trustDomain(mc), meshv1.TrustAnchorName, anchor.Lifetime, nil,
				cmmeta.IssuerReference{Kind: cmv1.ClusterIssuerKind, Name: meshv1.SelfSignedIssuerName, Group: "cert-manager.io"})
		})
		if err != nil {
			return false, "", err
		}
		if !certificateReady(cert) {
			return false, "waiting for cert-manager to issue the trust anchor " + meshv1.TrustAnchorName, nil
		}
	}
	issuer := &cmv1.Issuer{ObjectMeta: r.meta(meshv1.TrustAnchorName)}
	if err := r.apply(ctx, mc, issuer, func() {
		issuer.Spec.IssuerConfig = cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: anchorSecretName(mc)}}
	}); err != nil {
		return false, "", err
	}
	if !issuerReady(issuer) {
		return false, "waiting for cert-manager's CA Issuer " + issuer.Name + " over the Secret " + anchorSecretName(mc), nil
	}
	return true, "", nil
}

// reconcileIssuer has cert-manager issue the identity issuer from the trust anchor, and reports it.
func (r *MeshConfigReconciler) reconcileIssuer(ctx context.Context, mc *meshv1.MeshConfig) (bool, string, error) {
	cert := &cmv1.Certificate{ObjectMeta: r.meta(meshv1.IssuerName)}
	err := r.apply(ctx, mc, cert, func() {
		cert.Spec = caCertificate("identity."+trustDomain(mc), meshv1.IssuerName, mc.Spec.Identity.Issuer.Lifetime, mc.Spec.Identity.Issuer.RenewBefore,
			cmmeta.IssuerReference{Kind: cmv1.IssuerKind, Name: meshv1.TrustAnchorName, Group: "cert-manager.io"})
	})
	if err != nil {
		return false, "", err
	}
	if !certificateReady(cert) {
		return false, "waiting for cert-manager to issue the identity issuer " + meshv1.IssuerName, nil
	}
	secret, err := r.secret(ctx, meshv1.IssuerName)
	if err != nil {
		return false, "", err
	}
	iss, err := identity.ParseIssuer(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey], secret.Data["ca.crt"], time.Now())
	if err != nil {
		return false, "", fmt.Errorf("the identity issuer in Secret %s: %w", meshv1.IssuerName, err)
	}
	mc.Status.Issuer = certificateInfo(iss.Cert)
	anchors, err := r.anchors(ctx, mc)
	if err != nil {
		return false, "", err
	}
	if !signedByAny(iss.Cert, anchors) {
		// The anchor changed under a still-valid issuer: have cert-manager issue it again now,
		// as `cmctl renew` does, rather than at its next renewal.
		if err := r.renew(ctx, cert, "The trust anchor changed"); err != nil {
			return false, "", err
		}
		return false, "re-issuing the identity issuer from the new trust anchor", nil
	}
	return true, "", nil
}

// renew asks cert-manager to issue a Certificate again now.
func (r *MeshConfigReconciler) renew(ctx context.Context, cert *cmv1.Certificate, why string) error {
	for _, c := range cert.Status.Conditions {
		if c.Type == cmv1.CertificateConditionIssuing && c.Status == cmmeta.ConditionTrue {
			return nil // already under way
		}
	}
	before := cert.DeepCopy()
	now := metav1.Now()
	cert.Status.Conditions = append(cert.Status.Conditions, cmv1.CertificateCondition{
		Type: cmv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered",
		Message: why, LastTransitionTime: &now, ObservedGeneration: cert.Generation,
	})
	if err := r.Status().Patch(ctx, cert, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("asking cert-manager to re-issue %s: %w", cert.Name, err)
	}
	return nil
}

// anchors reads the trust anchors in the anchor Secret: ca.crt and tls.crt.
func (r *MeshConfigReconciler) anchors(ctx context.Context, mc *meshv1.MeshConfig) ([]*x509.Certificate, error) {
	secret, err := r.secret(ctx, anchorSecretName(mc))
	if err != nil {
		return nil, err
	}
	certs, err := identity.ParseCertificates(append(append([]byte{}, secret.Data["ca.crt"]...), secret.Data[corev1.TLSCertKey]...))
	if err != nil {
		return nil, fmt.Errorf("the trust anchor in Secret %s: %w", secret.Name, err)
	}
	return certs, nil
}

func signedByAny(c *x509.Certificate, anchors []*x509.Certificate) bool {
	for _, a := range anchors {
		if c.CheckSignatureFrom(a) == nil {
			return true
		}
	}
	return false
}

// reconcileTrustBundle publishes every anchor in force: those in the anchor Secret, and those that
// left it less than a workload certificate lifetime ago.
func (r *MeshConfigReconciler) reconcileTrustBundle(ctx context.Context, mc *meshv1.MeshConfig) (bool, string, error) {
	current, err := r.anchors(ctx, mc)
	if err != nil {
		return false, "", err
	}
	now := time.Now()
	keepRetired := workloadLifetime(mc) + identity.DefaultClockSkew
	cm := &corev1.ConfigMap{ObjectMeta: r.meta(meshv1.TrustBundleName)}
	err = r.apply(ctx, mc, cm, func() {
		previous, _ := identity.ParseCertificates([]byte(cm.Data[meshv1.TrustBundleKey]))
		anchors, retired := bundle(current, previous, cm.Annotations, now, keepRetired)
		for k := range cm.Annotations {
			if strings.HasPrefix(k, retiredAnnotationPrefix) {
				delete(cm.Annotations, k)
			}
		}
		for k, v := range retired {
			metav1.SetMetaDataAnnotation(&cm.ObjectMeta, k, v)
		}
		cm.Data = map[string]string{meshv1.TrustBundleKey: encodePEM(anchors)}
	})
	if err != nil {
		return false, "", err
	}
	anchors, _ := identity.ParseCertificates([]byte(cm.Data[meshv1.TrustBundleKey]))
	mc.Status.TrustAnchors = nil
	for _, a := range anchors {
		mc.Status.TrustAnchors = append(mc.Status.TrustAnchors, *certificateInfo(a))
	}
	return true, "", nil
}

// bundle is the current anchors, then the previous ones still within their grace, with the
// annotations that date their retirement. Expired anchors are dropped.
func bundle(current, previous []*x509.Certificate, annotations map[string]string, now time.Time, grace time.Duration) ([]*x509.Certificate, map[string]string) {
	seen := map[string]bool{}
	var anchors []*x509.Certificate
	retired := map[string]string{}
	for _, c := range current {
		if fp := identity.Fingerprint(c); !seen[fp] && now.Before(c.NotAfter) {
			seen[fp] = true
			anchors = append(anchors, c)
		}
	}
	for _, c := range previous {
		fp := identity.Fingerprint(c)
		if seen[fp] || now.After(c.NotAfter) {
			continue
		}
		key := retiredAnnotationPrefix + fp[:16]
		since, err := time.Parse(time.RFC3339, annotations[key])
		if err != nil {
			since = now
		}
		if now.Sub(since) < grace {
			seen[fp] = true
			anchors = append(anchors, c)
			retired[key] = since.UTC().Format(time.RFC3339)
		}
	}
	return anchors, retired
}

// apply creates or updates one of the MeshConfig's objects, owned by it and labelled as Skein's.
func (r *MeshConfigReconciler) apply(ctx context.Context, mc *meshv1.MeshConfig, obj client.Object, mutate func()) error {
	_, err := controllerutil.CreateOrPatch(ctx, r.Client, obj, func() error {
		mutate()
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[meshv1.ManagedByLabel] = meshv1.ManagedByValue
		obj.SetLabels(labels)
		return controllerutil.SetControllerReference(mc, obj, r.Scheme())
	})
	if err != nil {
		return fmt.Errorf("applying %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

func (r *MeshConfigReconciler) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: r.Namespace}
}

func (r *MeshConfigReconciler) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("the Secret %s/%s does not exist", r.Namespace, name)
	}
	return s, err
}

// caCertificate is a cert-manager Certificate for an ECDSA P-256 CA.
func caCertificate(cn, secretName string, duration, renewBefore *metav1.Duration, issuer cmmeta.IssuerReference) cmv1.CertificateSpec {
	return cmv1.CertificateSpec{
		CommonName:  cn,
		IsCA:        true,
		Duration:    duration,
		RenewBefore: renewBefore,
		SecretName:  secretName,
		IssuerRef:   issuer,
		PrivateKey:  &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmv1.RotationPolicyAlways},
		Usages:      []cmv1.KeyUsage{cmv1.UsageCertSign, cmv1.UsageCRLSign, cmv1.UsageDigitalSignature},
	}
}

func certificateReady(c *cmv1.Certificate) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmv1.CertificateConditionReady {
			return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == c.Generation
		}
	}
	return false
}

func issuerReady(i *cmv1.Issuer) bool {
	for _, cond := range i.Status.Conditions {
		if cond.Type == cmv1.IssuerConditionReady {
			return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == i.Generation
		}
	}
	return false
}

func certificateInfo(c *x509.Certificate) *meshv1.CertificateInfo {
	return &meshv1.CertificateInfo{Subject: c.Subject.CommonName, Fingerprint: identity.Fingerprint(c), NotAfter: &metav1.Time{Time: c.NotAfter}}
}

func encodePEM(certs []*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

func anchorSecretName(mc *meshv1.MeshConfig) string {
	if n := mc.Spec.Identity.TrustAnchor.SecretName; n != "" {
		return n
	}
	return meshv1.TrustAnchorName
}

func trustDomain(mc *meshv1.MeshConfig) string {
	if mc.Spec.TrustDomain == "" {
		return identity.DefaultTrustDomain
	}
	return mc.Spec.TrustDomain
}

func workloadLifetime(mc *meshv1.MeshConfig) time.Duration {
	if d := mc.Spec.Identity.WorkloadCertLifetime; d != nil {
		return d.Duration
	}
	return identity.DefaultLifetime
}
