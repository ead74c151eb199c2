package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/certmanager"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/test/framework"
)

// The simulated mesh: services svc-0000... in one namespace, each with podsPerService pods that run
// as the service's own ServiceAccount and back it, one EndpointSlice per service, port 80 -> 8080.
const (
	namespace   = "bench"
	servicePort = 80
	targetPort  = 8080
	// serviceCIDR is wide enough for thousands of ClusterIPs (envtest's default is a /24).
	serviceCIDR = "10.96.0.0/16"
)

// mesh is the API server, cert-manager and the control plane, with the cleanups that stop them.
type mesh struct {
	cluster *framework.Cluster
	cp      *framework.ControlPlane
	k8s     client.Client
	anchors []byte // the trust bundle, PEM
	stops   []func() error
}

// startMesh starts an API server, cert-manager and the control plane, and waits for the MeshConfig
// to be Ready, which is when the identity service has an issuer to sign client certificates with.
func startMesh(ctx context.Context) (m *mesh, err error) {
	m = &mesh{}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.stop())
		}
	}()
	crds, err := certmanager.CRDDir()
	if err != nil {
		return m, err
	}
	// framework.StartCluster, with a service CIDR that holds every ClusterIP.
	if m.cluster, err = localcluster.Start(localcluster.Options{
		CRDDirs:       []string{crds},
		APIServerArgs: map[string]string{"service-cluster-ip-range": serviceCIDR},
	}); err != nil {
		return m, err
	}
	m.stops = append(m.stops, m.cluster.Stop)
	m.k8s = m.cluster.Client
	stopCertManager, err := framework.StartCertManager(m.cluster)
	if err != nil {
		return m, err
	}
	m.stops = append(m.stops, stopCertManager)
	if m.cp, err = framework.StartControlPlane(m.cluster); err != nil {
		return m, err
	}
	m.stops = append(m.stops, m.cp.Stop)

	if err := m.k8s.Create(ctx, &meshv1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName}}); err != nil {
		return m, fmt.Errorf("creating the MeshConfig: %w", err)
	}
	if err := waitFor(ctx, 2*time.Minute, "the MeshConfig to be Ready", func() bool {
		mc := &meshv1.MeshConfig{}
		return m.k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc) == nil &&
			meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady)
	}); err != nil {
		return m, err
	}
	bundle := &corev1.ConfigMap{}
	if err := m.k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return m, fmt.Errorf("reading the trust bundle: %w", err)
	}
	m.anchors = []byte(bundle.Data[meshv1.TrustBundleKey])
	return m, nil
}

// stop stops what startMesh started, last first.
func (m *mesh) stop() error {
	var errs []error
	for i := len(m.stops) - 1; i >= 0; i-- {
		errs = append(errs, m.stops[i]())
	}
	m.stops = nil
	return errors.Join(errs...)
}

func serviceName(i int) string         { return fmt.Sprintf("svc-%04d", i) }
func podName(svc string, j int) string { return fmt.Sprintf("%s-%d", svc, j) }

// clientPod is the pod whose node ID service i's simulated proxy presents.
func clientPod(i int) string { return podName(serviceName(i), 0) }

// identityOf is the workload identity of service i's pods.
func identityOf(i int) spiffe.ID {
	return spiffe.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: namespace, ServiceAccount: serviceName(i)}
}

// populate creates the namespace, then the pods, then the EndpointSlices, then the Services, each
// step waiting for the control plane's cache to hold the previous one. A Service is therefore
// compiled once, complete, with every endpoint's pod (and so its identity) known; otherwise the
// compiler would retry Services whose pods it has not seen yet, and the cache would keep changing
// while the clients connect. It then waits for the xDS cache to hold every Service's resources.
func (m *mesh) populate(ctx context.Context, services, podsPerService int) error {
	if err := m.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	var pods, slices, svcs []client.Object
	for i := range services {
		svc := serviceName(i)
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: svc + "-bench", Labels: map[string]string{
				discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "bench-xds",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](targetPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for j := range podsPerService {
			pod := meshedPod(svc, podName(svc, j))
			pods = append(pods, pod)
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{podIP(i*podsPerService + j).String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod.Name},
			})
		}
		slices = append(slices, slice)
		svcs = append(svcs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: svc},
			Spec: corev1.ServiceSpec{
				ClusterIP: clusterIP(i).String(),
				Selector:  map[string]string{"app": svc},
				Ports: []corev1.ServicePort{{
					Name: "http", Port: servicePort, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP,
				}},
			},
		})
	}
	cached := m.cp.Manager.GetCache()
	steps := []struct {
		what string
		objs []client.Object
		list client.ObjectList
	}{
		{"pods", pods, &corev1.PodList{}},
		{"EndpointSlices", slices, &discoveryv1.EndpointSliceList{}},
		{"Services", svcs, &corev1.ServiceList{}},
	}
	for _, s := range steps {
		start := time.Now()
		if err := createAll(ctx, m.k8s, s.objs); err != nil {
			return fmt.Errorf("creating %s: %w", s.what, err)
		}
		if err := waitFor(ctx, 5*time.Minute, "the control plane to see the "+s.what, func() bool {
			return cached.List(ctx, s.list, client.InNamespace(namespace)) == nil && meta.LenList(s.list) == len(s.objs)
		}); err != nil {
			return err
		}
		step("  %d %s in %.1fs", len(s.objs), s.what, time.Since(start).Seconds())
	}
	// Every Service in the cluster (the API server's own "kubernetes" too) has one resource of each
	// type, all compiled from complete inputs.
	all := &corev1.ServiceList{}
	if err := cached.List(ctx, all); err != nil {
		return err
	}
	return waitFor(ctx, 5*time.Minute, "the xDS cache to hold every Service's resources", func() bool {
		for _, typ := range resourceTypes {
			if m.cp.XDS.Cache.Len(typ) != len(all.Items) {
				return false
			}
		}
		return true
	})
}

// meshedPod is a pod as the injector leaves it: with skein-proxy as a native sidecar.
func meshedPod(svc, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": svc}},
		Spec: corev1.PodSpec{
			ServiceAccountName: svc,
			InitContainers: []corev1.Container{{
				Name: meshv1.ProxyContainerName, Image: "skein-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			}},
			Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{{ContainerPort: targetPort}}}},
		},
	}
}

// podIP is the k-th pod's address, from 10.128.0.0/9.
func podIP(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)})
}

// clusterIP is service i's, from serviceCIDR, clear of the API server's own at 10.96.0.1.
func clusterIP(i int) netip.Addr {
	k := i + 256
	return netip.AddrFrom4([4]byte{10, 96, byte(k >> 8), byte(k)})
}

// createAll creates objs with a few requests in flight.
func createAll(ctx context.Context, c client.Client, objs []client.Object) error {
	const workers = 16
	work := make(chan client.Object)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for o := range work {
				if err := c.Create(ctx, o); err != nil {
					errs <- fmt.Errorf("creating %s: %w", o.GetName(), err)
					return
				}
			}
		})
	}
	var err error
feed:
	for _, o := range objs {
		select {
		case work <- o:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	return err
}

// certificates signs each client's certificate with the identity service's issuer, as it would for
// a proxy, and encodes it with its key as PEM.
func (m *mesh) certificates(services int) ([]clientSpec, error) {
	specs := make([]clientSpec, services)
	for i := range specs {
		cert, err := m.cp.WorkloadCertificate(identityOf(i))
		if err != nil {
			return nil, fmt.Errorf("signing the certificate of %s: %w", identityOf(i), err)
		}
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return nil, err
		}
		specs[i] = clientSpec{Node: xdsnames.NodeID(clientPod(i), namespace), Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})}
		for _, der := range cert.Certificate {
			specs[i].Cert = append(specs[i].Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return specs, nil
}

// waitFor polls cond until it holds, d passes or ctx ends.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
