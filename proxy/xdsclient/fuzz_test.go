package xdsclient

import (
	"testing"

	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzDecode feeds the hand-written wire decoders arbitrary bytes: each must answer with a value or
// an error, never panic, whatever a control plane (or a garbled stream) sends.
func FuzzDecode(f *testing.F) {
	f.Add(mustMarshal(newListener(web, true, "10.96.0.10:80", "[fd00::10]:80")))
	f.Add(mustMarshal(newRoute(web, []string{web}, weight(web, 9), weight(canary, 1))))
	f.Add(mustMarshal(newCluster(web)))
	f.Add(mustMarshal(newAssignment(web, ep{addr: "10.0.0.1:8080", identity: "spiffe://cluster.local/ns/default/sa/web"})))
	f.Fuzz(func(t *testing.T, b []byte) {
		for typ, decode := range decoders {
			_, _ = decode(web, &anypb.Any{TypeUrl: typ, Value: b})
		}
		_, _ = unmarshalResponse(b)
		_, _ = virtualHosts(b)
	})
}
