package identity

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// ReasonIssuerUpdated is the reason of the event emitted when a new issuer is put in force.
const ReasonIssuerUpdated = "IssuerUpdated"

// ReasonIssuerInvalid is the reason of the event emitted when the issuer Secret cannot be used; the
// issuer in force stays.
const ReasonIssuerInvalid = "IssuerInvalid"

// IssuerLoader puts the issuer from cert-manager's Secret in force whenever cert-manager renews it.
// Every replica runs it, since every replica signs.
type IssuerLoader struct {
	Client    client.Client
	Recorder  recorder.EventRecorder
	CA        *CA
	Namespace string
}

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// Reconcile loads the issuer Secret and switches to it if it is new and valid.
func (l *IssuerLoader) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	secret := &corev1.Secret{}
	if err := l.Client.Get(ctx, req.NamespacedName, secret); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	iss, err := ParseIssuer(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey], secret.Data["ca.crt"], time.Now())
	if err != nil {
		// A Secret cert-manager is half-way through writing, or a bad one: keep signing with the current issuer.
		l.event(ctx, corev1.EventTypeWarning, ReasonIssuerInvalid, "The issuer in Secret %s/%s cannot be used: %v", secret.Namespace, secret.Name, err)
		return ctrl.Result{}, fmt.Errorf("loading the issuer from Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	if cur := l.CA.Issuer(); cur != nil && cur.Cert.Equal(iss.Cert) {
		return ctrl.Result{}, nil
	}
	l.CA.SetIssuer(iss)
	ctrl.LoggerFrom(ctx).Info("Issuer in force", "fingerprint", Fingerprint(iss.Cert), "notAfter", iss.Cert.NotAfter)
	l.event(ctx, corev1.EventTypeNormal, ReasonIssuerUpdated, "Signing with issuer %s, valid until %s",
		Fingerprint(iss.Cert), iss.Cert.NotAfter.UTC().Format(time.RFC3339))
	return ctrl.Result{}, nil
}

// event is emitted on the MeshConfig, where users look for the mesh's identity events.
func (l *IssuerLoader) event(ctx context.Context, typ, reason, note string, args ...any) {
	mc := &meshv1.MeshConfig{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1.GroupVersion.String(), Kind: "MeshConfig"},
		ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName},
	}
	if err := l.Client.Get(ctx, client.ObjectKeyFromObject(mc), mc); err != nil {
		return
	}
	l.Recorder.Eventf(mc, nil, typ, reason, "LoadIssuer", note, args...)
}

// SetupWithManager watches the issuer Secret only, in every replica.
func (l *IssuerLoader) SetupWithManager(mgr ctrl.Manager) error {
	isIssuer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == l.Namespace && o.GetName() == meshv1.IssuerName
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Secret{}, builder.WithPredicates(isIssuer)).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Named("identity-issuer").
		Complete(l)
}
