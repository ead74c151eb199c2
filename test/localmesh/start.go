package localmesh

import (
	"context"

	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

// Start is where most pod tests begin: a network of their own, a framework.Mesh (API server,
// cert-manager, control plane listening on the network's gateway) and a Mesh of pods on it whose
// proxies, with xds, follow the control plane. Everything stops when the test ends.
func Start(t netns.T, name string, xds bool) (*Mesh, *framework.Mesh) {
	t.Helper()
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	network, err := netns.NewNetwork(t, name)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := framework.StartMesh(ctx, network.Gateway.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fm.Stop() })
	o := Options{
		Client: fm.Client, Network: network, IdentityAddr: fm.ControlPlane.IdentityAddr, IdentityServerName: framework.IdentityServerName,
		TrustAnchors: string(fm.Anchors),
	}
	if xds {
		o.XDSAddrs, o.XDSServerName = []string{fm.ControlPlane.XDSAddr}, framework.XDSServerName
	}
	m, err := New(ctx, t, o)
	if err != nil {
		t.Fatal(err)
	}
	return m, fm
}
