// Package v1alpha1 holds Skein's API: the mesh-wide MeshConfig, the TrafficSplit, Link and
// ExternalWorkload objects users write, and the MeshStatus the control plane reports in.
// +kubebuilder:object:generate=true
// +groupName=mesh.skein.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "mesh.skein.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
