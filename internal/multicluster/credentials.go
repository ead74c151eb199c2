package multicluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// ReaderRoleName is the ClusterRole that lets a linked cluster read what mirroring needs: Services
// and EndpointSlices, nothing else.
const ReaderRoleName = "skein-link-reader"

// LinkOptions say how `skein multicluster link` describes the cluster it runs against (B) to the
// cluster that will link to it (A).
type LinkOptions struct {
	// ClusterName is B's name in A: mirrors are called <service>-<ClusterName>.
	ClusterName string
	// Namespace is where A's Link and credentials Secret go.
	Namespace string
	// ControlPlaneNamespace is B's control plane's namespace, where the gateway and the reading
	// ServiceAccount are.
	ControlPlaneNamespace string
	// APIServerAddress, when set, replaces the API server address of B's kubeconfig, which may not
	// be reachable from A.
	APIServerAddress string
	// GatewayAddress, when set, is where A reaches B's gateway; else the gateway Service's LoadBalancer address.
	GatewayAddress string
	// TokenTTL is the lifetime asked for the token; the API server may shorten it.
	TokenTTL time.Duration
}

// LinkResult is the manifest for A and what it is worth knowing about it.
type LinkResult struct {
	// Manifest is YAML: the credentials Secret, then the Link.
	Manifest []byte
	// TokenExpiry is when the token the Secret holds expires, as the API server granted it.
	TokenExpiry time.Time
}

// ServiceAccountName is the ServiceAccount in B that clusters linking under name read B as.
func ServiceAccountName(name string) string { return "skein-link-" + name }

// CredentialsSecretName is the Secret holding the kubeconfig for B in A.
func CredentialsSecretName(name string) string { return "cluster-credentials-" + name }

// Link sets up, in the cluster that c and cfg reach (B), a ServiceAccount that may only read
// Services and EndpointSlices (idempotently), requests a token for it, and returns the Secret and
// the Link that let another cluster link to B.
func Link(ctx context.Context, c client.Client, cfg *rest.Config, o LinkOptions) (*LinkResult, error) {
	if o.ClusterName == "" {
		return nil, errors.New("--cluster-name is required: the name the linking cluster knows this one by")
	}
	mc := &meshv1.MeshConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("this cluster has no MeshConfig %s: install Skein here and enable spec.multicluster first", meshv1.MeshConfigName)
		}
		return nil, fmt.Errorf("reading MeshConfig %s: %w", meshv1.MeshConfigName, err)
	}
	if !mc.Spec.Multicluster.Enabled {
		return nil, fmt.Errorf("MeshConfig %s has spec.multicluster.enabled false: enable it so that this cluster runs a gateway", meshv1.MeshConfigName)
	}
	gatewayAddress, err := gatewayAddress(ctx, c, o)
	if err != nil {
		return nil, err
	}
	link := &meshv1.Link{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1.GroupVersion.String(), Kind: "Link"},
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.ClusterName},
		Spec: meshv1.LinkSpec{
			TargetClusterName:        o.ClusterName,
			ClusterCredentialsSecret: CredentialsSecretName(o.ClusterName),
			GatewayAddress:           gatewayAddress,
			GatewayPort:              mc.Spec.Multicluster.GatewayPort,
			GatewayIdentity:          fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain(mc), o.ControlPlaneNamespace, meshv1.GatewayName),
		},
	}
	if link.Spec.GatewayPort == 0 {
		link.Spec.GatewayPort = 4143
	}
	token, expiry, err := readerToken(ctx, c, o)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := readerKubeconfig(cfg, o, token)
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: CredentialsSecretName(o.ClusterName)},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"kubeconfig": kubeconfig},
	}
	var manifest []byte
	for _, obj := range []any{secret, link} {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		manifest = append(append(manifest, "---\n"...), y...)
	}
	return &LinkResult{Manifest: manifest, TokenExpiry: expiry}, nil
}

func trustDomain(mc *meshv1.MeshConfig) string {
	if mc.Spec.TrustDomain == "" {
		return "cluster.local"
	}
	return mc.Spec.TrustDomain
}

// gatewayAddress is the flag's, else the gateway Service's LoadBalancer address.
func gatewayAddress(ctx context.Context, c client.Client, o LinkOptions) (string, error) {
	if o.GatewayAddress != "" {
		return o.GatewayAddress, nil
	}
	svc := &corev1.Service{}
	key := client.ObjectKey{Namespace: o.ControlPlaneNamespace, Name: meshv1.GatewayName}
	if err := c.Get(ctx, key, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("the gateway Service %s does not exist (is spec.multicluster.enabled set and the control plane running?); or pass --gateway-address", key)
		}
		return "", fmt.Errorf("reading the gateway Service %s: %w", key, err)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			return in.IP, nil
		}
		if in.Hostname != "" {
			return in.Hostname, nil
		}
	}
	return "", fmt.Errorf("the gateway Service %s has no LoadBalancer address yet; pass --gateway-address with an address the linking cluster reaches it at", key)
}

// readerToken makes (or keeps) the reading ServiceAccount, its ClusterRole and binding, and
// requests a token for it.
func readerToken(ctx context.Context, c client.Client, o LinkOptions) (string, time.Time, error) {
	labels := map[string]string{meshv1.ManagedByLabel: meshv1.ManagedByValue}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.ControlPlaneNamespace, Name: ServiceAccountName(o.ClusterName)}}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ReaderRoleName}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ServiceAccountName(o.ClusterName)}}
	read := []string{"get", "list", "watch"}
	for _, s := range []struct {
		obj    client.Object
		mutate func()
	}{
		{sa, func() {}},
		{role, func() {
			role.Rules = []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: read},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			}
		}},
		{binding, func() {
			binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ReaderRoleName}
			binding.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}}
		}},
	} {
		if _, err := controllerutil.CreateOrPatch(ctx, c, s.obj, func() error {
			s.obj.SetLabels(labels) // these objects are Skein's alone
			s.mutate()
			return nil
		}); err != nil {
			return "", time.Time{}, fmt.Errorf("creating %T %s: %w", s.obj, s.obj.GetName(), err)
		}
	}
	seconds := int64(o.TokenTTL / time.Second)
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &seconds}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", time.Time{}, fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// readerKubeconfig reaches B's API server, trusting its CA, with the token.
func readerKubeconfig(cfg *rest.Config, o LinkOptions, token string) ([]byte, error) {
	server := cfg.Host
	if o.APIServerAddress != "" {
		server = o.APIServerAddress
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		var err error
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("reading the API server's CA: %w", err)
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[o.ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca, InsecureSkipTLSVerify: cfg.Insecure}
	kc.AuthInfos[o.ClusterName] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[o.ClusterName] = &clientcmdapi.Context{Cluster: o.ClusterName, AuthInfo: o.ClusterName}
	kc.CurrentContext = o.ClusterName
	return clientcmd.Write(*kc)
}
