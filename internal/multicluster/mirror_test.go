package multicluster

import (
	"net/netip"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

func TestMirrorName(t *testing.T) {
	tests := []struct {
		name, cluster, want string
		wantErr             bool
	}{
		{"web", "east", "web-east", false},
		{strings.Repeat("a", 59), "east", "", true}, // 63 characters at most
		{strings.Repeat("a", 58), "east", strings.Repeat("a", 58) + "-east", false},
	}
	for _, tt := range tests {
		g := NewWithT(t)
		got, err := MirrorName(tt.name, tt.cluster)
		if tt.wantErr {
			g.Expect(err).To(HaveOccurred())
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(tt.want))
	}
}

func TestLinkOf(t *testing.T) {
	tests := []struct {
		id, ns, name string
		ok           bool
	}{
		{"skein-system.east", "skein-system", "east", true},
		{"ns.name.with.dots", "ns", "name.with.dots", true},
		{"nodot", "", "", false},
		{".east", "", "east", false},
		{"ns.", "ns", "", false},
	}
	for _, tt := range tests {
		ns, name, ok := LinkOf(tt.id)
		if ok != tt.ok || (ok && (ns != tt.ns || name != tt.name)) {
			t.Errorf("LinkOf(%q) = %q, %q, %v; want %q, %q, %v", tt.id, ns, name, ok, tt.ns, tt.name, tt.ok)
		}
	}
}

func TestSliceFollowsTheGateway(t *testing.T) {
	link := &meshv1.Link{ObjectMeta: metav1.ObjectMeta{Namespace: "skein-system", Name: "east"}, Spec: meshv1.LinkSpec{TargetClusterName: "east"}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-east", UID: "u"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	tests := []struct {
		name      string
		gw        Gateway
		family    discoveryv1.AddressType
		endpoints int
		ready     bool
	}{
		{"alive", Gateway{IP: netip.MustParseAddr("10.1.2.3"), Port: 4143, Alive: true}, discoveryv1.AddressTypeIPv4, 1, true},
		{"down", Gateway{IP: netip.MustParseAddr("10.1.2.3"), Port: 4143}, discoveryv1.AddressTypeIPv4, 1, false},
		{"IPv6", Gateway{IP: netip.MustParseAddr("fd00::1"), Port: 4143, Alive: true}, discoveryv1.AddressTypeIPv6, 1, true},
		{"unresolved", Gateway{Port: 4143, Alive: true}, discoveryv1.AddressTypeIPv4, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			s := Slice(svc, link, tt.gw)
			g.Expect(s.AddressType).To(Equal(tt.family))
			g.Expect(s.Ports).To(Equal([]discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](4143), Protocol: ptr.To(corev1.ProtocolTCP)}}))
			g.Expect(s.Endpoints).To(HaveLen(tt.endpoints))
			if tt.endpoints == 1 {
				g.Expect(*s.Endpoints[0].Conditions.Ready).To(Equal(tt.ready))
				g.Expect(s.Endpoints[0].TargetRef).To(Equal(&corev1.ObjectReference{Kind: "Link", Namespace: "skein-system", Name: "east"}))
			}
			g.Expect(SliceEqual(s, Slice(svc, link, tt.gw))).To(BeTrue())
		})
	}
	g := NewWithT(t)
	g.Expect(SliceEqual(Slice(svc, link, tests[0].gw), Slice(svc, link, tests[1].gw))).To(BeFalse(), "readiness changed")
}
