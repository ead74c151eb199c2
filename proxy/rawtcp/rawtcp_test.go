package rawtcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair is a loopback connection: the dialled end wrapped, the accepted end as it is.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := lis.Accept()
		accepted <- c
	}()
	dialled, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	c, ok := Wrap(dialled).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", dialled)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer.(*net.TCPConn)
}

func TestWrapLeavesOtherConnectionsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", got)
	}
}

// A write larger than the socket buffers fills them, waits in the poller until the reader drains
// them, and still arrives whole and in order; so does what comes back.
func TestLargeWritesWaitForRoomAndArriveIntact(t *testing.T) {
	c, peer := pair(t)
	out := make([]byte, 16<<20)
	for i := range out {
		out[i] = byte(i * 7 / 3)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	n, err := c.Write(out)
	if err != nil || n != len(out) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(out))
	}
	if err := c.CloseWrite(); err != nil { // the embedded connection's method
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, out) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(b), len(out))
	}

	go func() {
		peer.Write(out)
		peer.CloseWrite()
	}()
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, out) {
		t.Fatalf("read back %d bytes (err %v), want the %d sent", len(back), err, len(out))
	}
	if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer's close = %d, %v; want 0, EOF", n, err)
	}
}

func TestReadHonoursItsDeadline(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline = %v, want a timeout", err)
	}
}

func TestWriteHonoursItsDeadline(t *testing.T) {
	c, _ := pair(t) // the peer never reads
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write into a full socket past its deadline = %d, %v; want a timeout", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write reports %d bytes written; want what the socket took, some but not all", n)
	}
}

func TestCloseEndsABlockedRead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read ended by Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
}

func TestAResetIsReportedAsTheSystemCallsError(t *testing.T) {
	c, peer := pair(t)
	peer.SetLinger(0)
	peer.Write([]byte("x"))
	peer.Close() // unread data in c: an RST
	time.Sleep(20 * time.Millisecond)
	buf := make([]byte, 10)
	var err error
	for range 3 {
		if _, err = c.Read(buf); err != nil {
			break
		}
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset = %v, want a read OpError for ECONNRESET", err)
	}
}

func TestReadAndWriteAllocateNothing(t *testing.T) {
	c, peer := pair(t)
	buf := make([]byte, 64)
	peerBuf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, peerBuf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(peerBuf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read allocate %v times", allocs)
	}
}
