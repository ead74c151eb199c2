package identity

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Defaults, as the MeshConfig CRD defaults them; used for fields a MeshConfig read from a cache
// built before defaulting may lack.
const (
	DefaultTrustDomain = "cluster.local"
	DefaultLifetime    = 24 * time.Hour
	DefaultClockSkew   = 20 * time.Second
)

// MeshConfigSettings reads the Settings from the MeshConfig through r, normally the manager's cache.
func MeshConfigSettings(r client.Reader) func(context.Context) (Settings, error) {
	return func(ctx context.Context) (Settings, error) {
		mc := &meshv1.MeshConfig{}
		if err := r.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
			return Settings{}, err
		}
		s := Settings{TrustDomain: mc.Spec.TrustDomain, Lifetime: or(mc.Spec.Identity.WorkloadCertLifetime, DefaultLifetime),
			ClockSkew: or(mc.Spec.Identity.ClockSkewAllowance, DefaultClockSkew)}
		if s.TrustDomain == "" {
			s.TrustDomain = DefaultTrustDomain
		}
		return s, nil
	}
}

func or(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
