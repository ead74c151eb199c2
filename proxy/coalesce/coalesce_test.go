package coalesce

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach it.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func pipe(t *testing.T) (*Conn, *countingConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	under := &countingConn{Conn: a}
	c := New(under)
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, under, b
}

// received is all that peer reads until the connection closes.
func received(peer net.Conn) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	return got
}

func TestWritesMadeTogetherGoOutAsOne(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c, under, peer := pipe(t)
	got := received(peer)
	var want bytes.Buffer
	// A goroutine that writes 100 times without blocking: as a proxy's goroutines run one after
	// the other on its one thread, the writer only gets to run after them.
	for i := range 100 {
		msg := fmt.Sprintf("frame %d;", i)
		want.WriteString(msg)
		if n, err := c.Write([]byte(msg)); n != len(msg) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer read %q, want %q", b, want.Bytes())
	}
	// One write, or a few if the machine was so loaded that the runtime preempted the loop.
	if n := under.writes.Load(); n > 5 {
		t.Errorf("100 writes made together reached the connection as %d", n)
	}
}

func TestAWriteAloneGoesOutAtOnce(t *testing.T) {
	c, _, peer := pipe(t)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestASlowPeerHoldsWritersBack(t *testing.T) {
	c, _, peer := pipe(t)
	// Nobody reads: what the writer holds plus maxPending is taken, then Write waits.
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		for range 3 * maxPending / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
		done <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	if w := written.Load(); w > 2*maxPending+int64(len(chunk)) {
		t.Fatalf("%d bytes accepted with nobody reading", w)
	}
	n, err := io.CopyN(io.Discard, peer, 3*maxPending)
	if err != nil || n != 3*maxPending {
		t.Fatalf("read %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAFailedConnectionFailsLaterWrites(t *testing.T) {
	c, _, peer := pipe(t)
	peer.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Write([]byte("x"))
		if errors.Is(err, io.ErrClosedPipe) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Write still says %v after the peer went away", err)
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("a Write after Close succeeded")
	}
}

func TestConcurrentWritersKeepTheirBytesTogether(t *testing.T) {
	c, _, peer := pipe(t)
	got := received(peer)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c.Write([]byte(fmt.Sprintf("<%d:%03d>", w, i)))
			}
		})
	}
	wg.Wait()
	c.Close()
	b := <-got
	if len(b) != 8*200*len("<0:000>") {
		t.Fatalf("read %d bytes", len(b))
	}
	// Each writer's messages arrive whole and in its order.
	next := make([]int, 8)
	for len(b) > 0 {
		var w, i int
		if _, err := fmt.Sscanf(string(b[:7]), "<%d:%03d>", &w, &i); err != nil || i != next[w] {
			t.Fatalf("at %q: writer %d's message %d, want %d (%v)", b[:7], w, i, next[w], err)
		}
		next[w]++
		b = b[7:]
	}
}

// A burst larger than the buffers kept for reuse must not leave the writer filling the buffer it
// is sending: every byte arrives once, in order.
func TestBurstsLargerThanTheKeptBufferArriveIntact(t *testing.T) {
	c, _, peer := pipe(t)
	got := received(peer)
	big := make([]byte, keptBuffer+1)
	var want []byte
	for i := range 300 {
		for j := range big {
			big[j] = byte(i + j)
		}
		c.Write(big)
		want = append(want, big...)
		// Small writes behind it land in a kept buffer; with the writer sending that same buffer,
		// they would overwrite what it sends.
		for j := range 20 {
			msg := []byte(fmt.Sprintf("<%03d:%02d>", i, j))
			c.Write(msg)
			want = append(want, msg...)
			if j%5 == 0 {
				runtime.Gosched()
			}
		}
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, not the %d written, in order", len(b), len(want))
	}
}
