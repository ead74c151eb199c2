package xds

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/xdsnames"
)

// HeartbeatInterval is how often each replica records that the external workloads connected to it
// are still there. The ExternalWorkload controller counts a proxy as connected while its lastSeen is
// under ConnectedWithin old.
const (
	HeartbeatInterval = 5 * time.Second
	ConnectedWithin   = 3 * HeartbeatInterval
)

// Heartbeat writes status.lastSeen of every ExternalWorkload whose proxy holds a stream to this
// replica. Each replica knows only its own streams, so the record lives in the API server, where the
// ExternalWorkload controller (which runs in one replica) reads it.
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=externalworkloads/status,verbs=get;patch
type Heartbeat struct {
	Client client.Client
	Server *Server
	Log    logr.Logger

	kick chan string
}

// NewHeartbeat beats for server's streams, and at once for a node that has just connected.
func NewHeartbeat(c client.Client, server *Server, log logr.Logger) *Heartbeat {
	h := &Heartbeat{Client: c, Server: server, Log: log, kick: make(chan string, 64)}
	server.OnConnect = func(node string) {
		select {
		case h.kick <- node:
		default: // the next beat records it
		}
	}
	return h
}

// NeedLeaderElection is false: every replica beats for its own streams.
func (h *Heartbeat) NeedLeaderElection() bool { return false }

// Start beats until ctx is done.
func (h *Heartbeat) Start(ctx context.Context) error {
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case node := <-h.kick:
			h.beat(ctx, node)
		case <-tick.C:
			for _, node := range h.Server.Nodes() {
				h.beat(ctx, node)
			}
		}
	}
}

// beat records now as the node's lastSeen when the node is an ExternalWorkload; pods have the
// kubelet for that.
func (h *Heartbeat) beat(ctx context.Context, node string) {
	name, ns, err := xdsnames.ParseNodeID(node)
	if err != nil {
		return
	}
	ew := &meshv1.ExternalWorkload{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ew); err != nil {
		if !apierrors.IsNotFound(err) {
			h.Log.Error(err, "Reading an ExternalWorkload to record its proxy's heartbeat", "node", node)
		}
		return
	}
	before := ew.DeepCopy()
	ew.Status.LastSeen = &metav1.Time{Time: time.Now()}
	if err := h.Client.Status().Patch(ctx, ew, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		h.Log.Error(err, "Recording an external workload's heartbeat", "node", node)
	}
}
