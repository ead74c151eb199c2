package detect

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		in     string
		want   Protocol
		wantOK bool
	}{
		{"GET / HTTP/1.1\r\n", HTTP1, true},
		{"POST ", HTTP1, true},
		{"OPTIONS * HTTP/1.1", HTTP1, true},
		{"GE", Opaque, false},
		{"P", Opaque, false}, // POST, PUT, PATCH or the HTTP/2 preface
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP2, true},
		{"PRI * HTTP/2", Opaque, false},
		{"\x16\x03\x01\x02\x00", Opaque, true}, // a TLS ClientHello
		{"SSH-2.0-OpenSSH", Opaque, true},
		{"GETX", Opaque, true},
		{"", Opaque, false},
	}
	for _, tt := range tests {
		got, ok := Classify([]byte(tt.in))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestDetectReplaysAndTimesOut(t *testing.T) {
	tests := []struct {
		name  string
		write string
		want  Protocol
	}{
		{"HTTP/1", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", HTTP1},
		{"HTTP/2", Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", HTTP2},
		{"opaque", "\x00\x01binary", Opaque},
		{"server speaks first", "", Opaque},
		{"a slow HTTP/1 client", "GE", Opaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			wrote := make(chan struct{})
			go func() {
				if tt.write != "" {
					_, _ = client.Write([]byte(tt.write))
				}
				close(wrote)
			}()
			start := time.Now()
			p, conn, err := Detect(server, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if p != tt.want {
				t.Errorf("Detect = %v, want %v", p, tt.want)
			}
			if tt.write == "" && time.Since(start) < 100*time.Millisecond {
				t.Errorf("gave up after %s, before the timeout", time.Since(start))
			}
			go func() {
				<-wrote
				// Let a write that timed out in Detect be retried no more: the pipe is done.
				client.Close()
			}()
			got, _ := io.ReadAll(conn)
			if !bytes.Equal(got, []byte(tt.write)) {
				t.Errorf("replayed %q, want %q", got, tt.write)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", Preface, "PRI", "P", "\x16\x03\x01", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := Classify(b)
		if !ok {
			// Undecided: b must be a strict prefix of something recognisable.
			if len(b) >= len(Preface) {
				t.Fatalf("undecided after %d bytes", len(b))
			}
			return
		}
		// Decisions are stable: more bytes never change them.
		if p2, ok2 := Classify(append(append([]byte{}, b...), 'x')); !ok2 || p2 != p {
			t.Fatalf("Classify(%q) = %v but with one more byte %v, %v", b, p, p2, ok2)
		}
		if p == HTTP2 && !bytes.HasPrefix(b, []byte(Preface)) {
			t.Fatalf("%q classified HTTP/2 without the preface", b)
		}
	})
}
