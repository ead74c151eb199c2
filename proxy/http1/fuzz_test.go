package http1

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// FuzzParse checks newRequest against net/http: whatever header it takes on, net/http reads the
// same way (method, target, host, fields, length, close). What it turns down goes to net/http, so
// turning down too much costs only speed; taking on what net/http would refuse, or reading it
// differently, is what this looks for.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nhost: svc:80\r\nuser-agent: u\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
		"GET /%7E%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX:\t a \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 00\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	c := &serverConn{tmpl: new(http.Request).WithContext(context.Background())}
	f.Fuzz(func(t *testing.T, head []byte) {
		i := indexBlankLine(head)
		if i < 0 {
			return
		}
		head = head[:i]
		ours := newRequest(c, head)
		if ours == nil {
			return
		}
		theirs, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("taken on, but net/http refuses it (%v):\n%q", err, head)
		}
		if ours.Method != theirs.Method || ours.RequestURI != theirs.RequestURI || *ours.URL != *theirs.URL ||
			ours.Host != theirs.Host || ours.ContentLength != theirs.ContentLength || ours.Close != theirs.Close ||
			!reflect.DeepEqual(ours.Header, theirs.Header) {
			t.Fatalf("read otherwise than net/http:\n%q\nours:   %s %s %#v host %q length %d close %v %v\ntheirs: %s %s %#v host %q length %d close %v %v", head,
				ours.Method, ours.RequestURI, ours.URL, ours.Host, ours.ContentLength, ours.Close, ours.Header,
				theirs.Method, theirs.RequestURI, theirs.URL, theirs.Host, theirs.ContentLength, theirs.Close, theirs.Header)
		}
	})
}

// FuzzParseTarget checks ParseTarget against url.ParseRequestURI, whatever the target.
func FuzzParseTarget(f *testing.F) {
	for _, seed := range []string{"/", "/a/b?c=d", "/a?", "/a??b", "/%7E", "*", "http://h/p", "/a b", "/a?\x00", "/é?é", "/a#b?c#d"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		var ours url.URL
		errOurs := ParseTarget(target, &ours)
		theirs, errTheirs := url.ParseRequestURI(target)
		if (errOurs == nil) != (errTheirs == nil) || errOurs == nil && !reflect.DeepEqual(&ours, theirs) {
			t.Fatalf("%q: ours %#v (%v), url's %#v (%v)", target, ours, errOurs, theirs, errTheirs)
		}
	})
}
