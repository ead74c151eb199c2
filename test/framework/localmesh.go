package framework

import (
	"context"

	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

// StartLocalMesh starts a Mesh (StartMesh) whose identity and xDS services listen where the pods
// of a new network reach them, and a localmesh.Mesh to run meshed pods there: with xds their
// proxies take their destinations from the control plane, otherwise from files. Both stop when t
// ends.
func StartLocalMesh(ctx context.Context, t netns.T, networkName string, xds bool) (*localmesh.Mesh, *Mesh, error) {
	if err := netns.Supported(); err != nil {
		return nil, nil, err
	}
	network, err := netns.NewNetwork(t, networkName)
	if err != nil {
		return nil, nil, err
	}
	fm, err := StartMesh(ctx, network.Gateway.String())
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { fm.Stop() })
	o := localmesh.Options{
		Client: fm.Client, Network: network, IdentityAddr: fm.ControlPlane.IdentityAddr, IdentityServerName: IdentityServerName,
		TrustAnchors: string(fm.Anchors),
	}
	if xds {
		o.XDSAddrs, o.XDSServerName = []string{fm.ControlPlane.XDSAddr}, XDSServerName
	}
	m, err := localmesh.New(ctx, t, o)
	return m, fm, err
}
