package xds

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

func TestInternSharesTheCachesNames(t *testing.T) {
	g := NewWithT(t)
	c := NewCache()
	name := "web.shop.svc.cluster.local:80"
	port := corev1.ServicePort{Name: "http", Port: 80}
	res := Resources{}
	add(res, name, cluster(name))
	add(res, name, routeConfig(name, service(port), port, nil, nil))
	g.Expect(c.Set("shop/web", res)).To(Succeed())

	// As a request decodes it: equal, in memory of its own.
	decoded := strings.Clone(name)
	g.Expect(unsafe.StringData(c.Intern(decoded))).To(BeIdenticalTo(unsafe.StringData(name)))
	g.Expect(c.Intern("api.shop.svc.cluster.local:80")).To(Equal("api.shop.svc.cluster.local:80"))

	// The route goes but the cluster stays: the name is still the cache's.
	g.Expect(c.Set("shop/web", Resources{resource.ClusterType: res[resource.ClusterType]})).To(Succeed())
	g.Expect(unsafe.StringData(c.Intern(decoded))).To(BeIdenticalTo(unsafe.StringData(name)))

	// The Service goes: the cache no longer keeps its names.
	g.Expect(c.Set("shop/web", nil)).To(Succeed())
	g.Expect(unsafe.StringData(c.Intern(decoded))).To(BeIdenticalTo(unsafe.StringData(decoded)))
	g.Expect(c.Len(resource.ClusterType)).To(Equal(0))
}
