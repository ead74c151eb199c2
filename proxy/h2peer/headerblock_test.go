package h2peer

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock reads what x/net's Framer reads with ReadMetaHeaders, the same way: fields,
// truncation, and which errors are the stream's and which the connection's.
func TestHeaderBlockReadsAsTheFramerDoes(t *testing.T) {
	big := strings.Repeat("v", maxHeaderList/2)
	for _, tc := range []struct {
		name   string
		fields [][2]string
		split  int // bytes per frame of the block: HEADERS, then CONTINUATIONs
	}{
		{"request", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "web"}, {":path", "/"}, {"x-a", "1"}, {"x-a", "2"}}, 0},
		{"response in continuations", [][2]string{{":status", "200"}, {"content-type", "text/plain"}, {"x-long", strings.Repeat("l", 300)}}, 7},
		{"upper-case name", [][2]string{{":status", "200"}, {"X-Up", "1"}}, 0},
		{"pseudo after regular", [][2]string{{"x-a", "1"}, {":status", "200"}}, 0},
		{"unknown pseudo", [][2]string{{":nope", "1"}}, 0},
		{"duplicate pseudo", [][2]string{{":path", "/"}, {":path", "/b"}}, 0},
		{"mixed pseudos", [][2]string{{":status", "200"}, {":path", "/"}}, 0},
		{"bad value", [][2]string{{":status", "200"}, {"x-a", "a\x00b"}}, 0},
		{"over the list size", [][2]string{{":status", "200"}, {"x-a", big}, {"x-b", big}, {"x-c", "c"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var block bytes.Buffer
			enc := hpack.NewEncoder(&block)
			for _, f := range tc.fields {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			var wire bytes.Buffer
			w := http2.NewFramer(&wire, nil)
			frag := block.Bytes()
			first := frag
			if tc.split > 0 && len(frag) > tc.split {
				first, frag = frag[:tc.split], frag[tc.split:]
			} else {
				frag = nil
			}
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(frag) == 0, EndStream: true})
			for len(frag) > 0 {
				n := min(tc.split, len(frag))
				w.WriteContinuation(1, n == len(frag), frag[:n])
				frag = frag[n:]
			}
			raw := wire.Bytes()

			theirs := http2.NewFramer(nil, bytes.NewReader(raw))
			theirs.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			theirs.MaxHeaderListSize = maxHeaderList
			tf, terr := theirs.ReadFrame()

			ours := http2.NewFramer(nil, bytes.NewReader(raw))
			f, err := ours.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			of, oerr := newHeaderBlock().read(ours, f.(*http2.HeadersFrame))

			var tse, ose http2.StreamError
			var tce, oce http2.ConnectionError
			if errors.As(terr, &tse) != errors.As(oerr, &ose) || errors.As(terr, &tce) != errors.As(oerr, &oce) || (terr == nil) != (oerr == nil) {
				t.Fatalf("x/net: %v; ours: %v", terr, oerr)
			}
			if terr != nil {
				return
			}
			tm := tf.(*http2.MetaHeadersFrame)
			if tm.Truncated != of.Truncated || !reflect.DeepEqual(tm.Fields, of.Fields) || tm.StreamEnded() != of.StreamEnded() {
				t.Fatalf("x/net read %v (truncated %v); ours %v (truncated %v)", tm.Fields, tm.Truncated, of.Fields, of.Truncated)
			}
		})
	}
}
