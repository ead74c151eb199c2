package multicluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// ManagedBy marks the EndpointSlices of mirrored Services, so that the EndpointSlice controller
// leaves them alone.
const ManagedBy = "link.mesh.skein.dev"

// LinkID is the LinkLabel value of a Link's mirrors.
func LinkID(link *meshv1.Link) string { return link.Namespace + "." + link.Name }

// LinkOf reads a LinkLabel value back as the Link's namespace and name; a namespace has no dot.
func LinkOf(id string) (namespace, name string, ok bool) {
	namespace, name, ok = strings.Cut(id, ".")
	return namespace, name, ok && namespace != "" && name != ""
}

// Selector picks the remote Services a Link mirrors: its selector, else the export label.
func Selector(link *meshv1.Link) (labels.Selector, error) {
	if link.Spec.Selector == nil {
		return labels.SelectorFromSet(labels.Set{meshv1.ExportedLabel: "true"}), nil
	}
	s, err := metav1.LabelSelectorAsSelector(link.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("spec.selector: %w", err)
	}
	return s, nil
}

// Mirrorable says whether a remote Service can be mirrored: an ExternalName Service has no
// endpoints, and a mirror of a mirror would loop between clusters linked both ways.
func Mirrorable(svc *corev1.Service) bool {
	_, mirror := svc.Labels[meshv1.MirroredFromLabel]
	return svc.Spec.Type != corev1.ServiceTypeExternalName && !mirror
}

// MirrorName is the local name of the remote Service name of cluster, or an error when that is not a
// valid Service name.
func MirrorName(name, cluster string) (string, error) {
	mirror := name + "-" + cluster
	if errs := validation.IsDNS1035Label(mirror); len(errs) > 0 {
		return "", fmt.Errorf("the mirror of Service %s would be named %s: %s", name, mirror, errs[0])
	}
	return mirror, nil
}

// IsMirrorOf says whether a local object was made by link; no other object is ever changed. The
// cluster named by MirroredFromLabel may be an earlier spec.targetClusterName, whose mirrors are
// then removed.
func IsMirrorOf(obj metav1.Object, link *meshv1.Link) bool {
	l := obj.GetLabels()
	_, mirrored := l[meshv1.MirroredFromLabel]
	return mirrored && l[meshv1.LinkLabel] == LinkID(link)
}

func mirrorLabels(link *meshv1.Link) map[string]string {
	return map[string]string{meshv1.MirroredFromLabel: link.Spec.TargetClusterName, meshv1.LinkLabel: LinkID(link)}
}

// ApplyService makes local, a new or existing mirror, mirror remote: the same ports, no selector,
// ClusterIP, the labels and annotation that mark it. Its cluster IP, if assigned, is kept.
func ApplyService(local, remote *corev1.Service, link *meshv1.Link) {
	if local.Labels == nil {
		local.Labels = map[string]string{}
	}
	for k, v := range mirrorLabels(link) {
		local.Labels[k] = v
	}
	if local.Annotations == nil {
		local.Annotations = map[string]string{}
	}
	local.Annotations[meshv1.RemoteServiceAnnotation] = remote.Name + "." + remote.Namespace
	local.Spec.Type = corev1.ServiceTypeClusterIP
	local.Spec.Selector = nil
	ports := make([]corev1.ServicePort, 0, len(remote.Spec.Ports))
	for _, p := range remote.Spec.Ports {
		ports = append(ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	local.Spec.Ports = ports
}

// Gateway is what the endpoints of mirrors point at.
type Gateway struct {
	// IP is the gateway's address; invalid while it is unknown, and then mirrors have no endpoint.
	IP netip.Addr
	// Port is the gateway's mTLS port, which every port of a mirror maps to.
	Port int32
	// Alive is whether the gateway answers its probes; its endpoint is ready only then.
	Alive bool
}

// Slice is the EndpointSlice of the mirror svc: one endpoint, the gateway, with a target reference
// to the Link, from which the xDS service learns the gateway's identity.
func Slice(svc *corev1.Service, link *meshv1.Link, gw Gateway) *discoveryv1.EndpointSlice {
	l := mirrorLabels(link)
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = ManagedBy
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: svc.Name, Labels: l,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), AppProtocol: p.AppProtocol, Port: ptr.To(gw.Port)})
	}
	if !gw.IP.IsValid() {
		return s
	}
	if gw.IP.Is6() && !gw.IP.Is4In6() {
		s.AddressType = discoveryv1.AddressTypeIPv6
	}
	s.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{gw.IP.Unmap().String()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(gw.Alive), Serving: ptr.To(gw.Alive), Terminating: ptr.To(false)},
		TargetRef:  &corev1.ObjectReference{Kind: "Link", Namespace: link.Namespace, Name: link.Name},
	}}
	return s
}

// SliceEqual says whether have already holds what want does, so that nothing is written for nothing.
func SliceEqual(have, want *discoveryv1.EndpointSlice) bool {
	return have.AddressType == want.AddressType &&
		labels.Equals(have.Labels, want.Labels) &&
		slices.EqualFunc(have.Ports, want.Ports, func(a, b discoveryv1.EndpointPort) bool {
			return ptr.Equal(a.Name, b.Name) && ptr.Equal(a.Port, b.Port) && ptr.Equal(a.Protocol, b.Protocol) && ptr.Equal(a.AppProtocol, b.AppProtocol)
		}) &&
		slices.EqualFunc(have.Endpoints, want.Endpoints, func(a, b discoveryv1.Endpoint) bool {
			return slices.Equal(a.Addresses, b.Addresses) && ptr.Equal(a.Conditions.Ready, b.Conditions.Ready) &&
				ptr.Equal(a.Conditions.Serving, b.Conditions.Serving) && a.TargetRef != nil && b.TargetRef != nil &&
				a.TargetRef.Kind == b.TargetRef.Kind && a.TargetRef.Namespace == b.TargetRef.Namespace && a.TargetRef.Name == b.TargetRef.Name
		})
}
