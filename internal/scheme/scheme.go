// Package scheme builds the runtime.Scheme with every kind the control plane reads or writes, so
// that the control plane, its tests and the CLI agree on it.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// New returns a scheme with Kubernetes' built-in kinds, cert-manager's and Skein's.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1.AddToScheme(s))
	utilruntime.Must(cmv1.AddToScheme(s))
	return s
}
