package h2peer

import (
	"context"
	"testing"
	"time"
)

func TestStreamContextIsDoneOnceCancelled(t *testing.T) {
	c := new(streamCtx)
	ran := make(chan string, 3)
	stopped := c.AfterFunc(func() { ran <- "stopped" })
	c.AfterFunc(func() { ran <- "kept" })
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	viaContext := context.AfterFunc(c, func() { ran <- "context.AfterFunc" })
	done := c.Done()
	if !stopped() || stopped() {
		t.Fatal("stop before cancel: want true once, then false")
	}
	if c.Err() != nil || child.Err() != nil {
		t.Fatal("done before cancel")
	}
	c.cancel()
	c.cancel() // a second time is nothing
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed by cancel")
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case f := <-ran:
			got[f] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("after-funcs that ran: %v; want kept and context.AfterFunc", got)
		}
	}
	if !got["kept"] || !got["context.AfterFunc"] || got["stopped"] {
		t.Fatalf("after-funcs that ran: %v", got)
	}
	if viaContext() {
		t.Fatal("stopping an after-func that ran says it stopped it")
	}
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a child context outlived the stream's")
	}
	if c.Err() != context.Canceled || child.Err() != context.Canceled {
		t.Fatalf("Err = %v, child's %v", c.Err(), child.Err())
	}
	late := make(chan struct{})
	if c.AfterFunc(func() { close(late) })() {
		t.Fatal("stop of an after-func made once done says it stopped it")
	}
	select {
	case <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("an after-func made once done did not run")
	}
	if d := new(streamCtx); func() bool { d.cancel(); _, ok := <-d.Done(); return ok }() {
		t.Fatal("Done asked for after cancel is not closed")
	}
}

func TestStreamContextHasItsConnectionsValues(t *testing.T) {
	type key struct{}
	c := &streamCtx{values: context.WithValue(context.Background(), key{}, "conn")}
	if v := c.Value(key{}); v != "conn" {
		t.Fatalf("Value = %v, want the connection's", v)
	}
	if v := new(streamCtx).Value(key{}); v != nil {
		t.Fatalf("Value without connection values = %v", v)
	}
}
