// Command proxyless is a proxyless gRPC application for the tests: a server that answers grpc's
// interop TestService with its own name, and a client that reaches it through grpc-go's xds
// resolver, configured only by the bootstrap file that GRPC_XDS_BOOTSTRAP names, as an
// application in the mesh would be.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and the balancers it configures
)

func main() {
	mode := flag.String("mode", "serve", "serve, or call")
	addr := flag.String("addr", "127.0.0.1:0", "serve: the address to listen on")
	name := flag.String("name", "", "serve: the name to answer with (default: the address)")
	target := flag.String("target", "", `call: the channel's target, "xds:///<service authority>"`)
	calls := flag.Int("calls", 0, "call: how many RPCs to send; 0 sends them until the process is stopped")
	interval := flag.Duration("interval", 10*time.Millisecond, "call: the pause between RPCs")
	timeout := flag.Duration("timeout", 5*time.Second, "call: the deadline of each RPC")
	flag.Parse()
	var err error
	switch *mode {
	case "serve":
		err = serve(*addr, *name)
	case "call":
		err = call(*target, *calls, *interval, *timeout)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxyless:", err)
		os.Exit(1)
	}
}

// serve answers UnaryCall with the server's name, in plain text as a workload without a proxy
// does. It prints "listening on <address>" once it accepts connections.
func serve(addr, name string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if name == "" {
		name = lis.Addr().String()
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &testService{name: name})
	fmt.Println("listening on", lis.Addr())
	return srv.Serve(lis)
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: s.name}, nil
}

// call sends RPCs on one channel and prints "answer <server name>" for each answer. A failed RPC
// is printed to stderr and does not stop the others: the configuration may still be on its way.
func call(target string, calls int, interval, timeout time.Duration) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	failed := 0
	for i := 0; calls == 0 || i < calls; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
		cancel()
		if err != nil {
			failed++
			fmt.Fprintln(os.Stderr, "proxyless: RPC failed:", err)
		} else {
			fmt.Println("answer", resp.GetServerId())
		}
		time.Sleep(interval)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d RPCs failed", failed, calls)
	}
	return nil
}
