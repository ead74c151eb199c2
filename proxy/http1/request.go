package http1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// RequestAndURL makes a request and a URL in one allocation, for the servers and proxies that make
// both for every request (this package, h2peer, forward); the request's URL is left to set.
func RequestAndURL() (*http.Request, *url.URL) {
	both := new(struct {
		r http.Request
		u url.URL
	})
	return &both.r, &both.u
}

// newRequest parses a request header, up to and including its blank line, into a request, or
// returns nil when this package does not take it on: anything but an HTTP/1.1 request for a path,
// with a Host and at most a Content-Length body, that is neither an upgrade nor expects 100
// Continue, and whose every line is well formed. The header is copied into one string, which the
// method, target, header names and values then share.
func newRequest(c *serverConn, head []byte) *http.Request {
	hs := string(head)
	line, rest, _ := strings.Cut(hs, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || !httpguts.ValidHeaderFieldName(method) || !validTarget(target) {
		return nil
	}
	r, u := RequestAndURL()
	*r = *c.tmpl
	r.Method, r.RequestURI, r.Proto, r.ProtoMajor, r.ProtoMinor = method, target, "HTTP/1.1", 1, 1
	r.RemoteAddr = c.remote
	if ParseTarget(target, u) != nil {
		return nil
	}
	r.URL = u

	hosts, lengths := 0, 0
	contentLength := ""
	r.Header = Fields(rest, func(key, value string) (add, ok bool) {
		switch key {
		case "Host":
			hosts++
			r.Host = value
			return false, true // net/http keeps the Host out of the header map too
		case "Content-Length":
			lengths++
			contentLength = value
		case "Transfer-Encoding", "Expect", "Upgrade":
			return false, false
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{value}, "upgrade") {
				return false, false
			}
			if httpguts.HeaderValuesContainsToken([]string{value}, "close") {
				r.Close = true
			}
		}
		return true, true
	})
	if r.Header == nil {
		return nil
	}
	if hosts != 1 || lengths > 1 || !httpguts.ValidHostHeader(r.Host) {
		return nil
	}
	r.Body = http.NoBody
	if lengths == 1 {
		n, ok := ParseLength(contentLength)
		if !ok {
			return nil
		}
		r.ContentLength = n
		if n > 0 {
			r.Body = &body{LengthBody: LengthBody{br: c.br, remain: n}}
		}
	}
	return r
}

// Fields parses a header block: the lines after a message's start line, each "Name: value" and
// ending in CRLF, the last one blank. It calls keep for each field, its name made canonical and its
// value trimmed, to say whether the field goes in the header and whether the message is still one
// to take on. It returns nil for a malformed line (a folded one too) or keep's no. The values share
// block's memory, and one array for the lists of values.
func Fields(block string, keep func(key, value string) (add, ok bool)) http.Header {
	n := strings.Count(block, "\r\n") - 1 // less the blank line
	if n < 0 {
		return nil
	}
	h := make(http.Header, n)
	values := make([]string, n)
	for i := range n {
		var line string
		line, block, _ = strings.Cut(block, "\r\n")
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil
		}
		key := name
		if !canonical(name) {
			key = http.CanonicalHeaderKey(name)
		}
		if add, ok := keep(key, value); !ok {
			return nil
		} else if !add {
			continue
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
		} else {
			values[i] = value
			h[key] = values[i : i+1 : i+1]
		}
	}
	return h
}

// validTarget takes a path with an optional query: visible ASCII only.
func validTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false // absolute-form, authority-form (CONNECT) and * are for net/http
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// ParseTarget is url.ParseRequestURI into u, without its allocations for the plain targets that
// nearly all are: a path of characters a URL path keeps as they are, with a query of visible ASCII.
// h2peer reads a request's :path with it too.
func ParseTarget(t string, u *url.URL) error {
	path, query, hasQuery := strings.Cut(t, "?")
	plain := path != "" && path[0] == '/'
	for i := 0; plain && i < len(path); i++ {
		plain = plainPath[path[i]]
	}
	for i := 0; plain && i < len(query); i++ {
		plain = query[i] > ' ' && query[i] < 0x7f
	}
	if !plain {
		parsed, err := url.ParseRequestURI(t)
		if err != nil {
			return err
		}
		*u = *parsed
		return nil
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return nil
}

// plainPath are the bytes that net/url leaves as they are in a path.
var plainPath = func() (set [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@" {
		set[c] = true
	}
	return set
}()

// canonical says whether a valid header name is already in canonical form ("Content-Length").
func canonical(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// ParseLength reads a Content-Length: digits only.
func ParseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

var errBodyDone = errors.New("http: invalid Read on closed Body")

// LengthBody is a body of known length read from a buffered connection: a request's here, a
// response's in the inbound proxy's application client.
type LengthBody struct {
	br     *bufio.Reader
	remain int64
}

// NewLengthBody reads the next n bytes of br.
func NewLengthBody(br *bufio.Reader, n int64) *LengthBody { return &LengthBody{br: br, remain: n} }

// Read reads the body, with io.EOF alongside its last bytes, and io.ErrUnexpectedEOF when the
// connection ends before them.
func (b *LengthBody) Read(p []byte) (int, error) {
	if b.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	case err == nil && b.remain == 0:
		return n, io.EOF
	}
	return n, err
}

// Close leaves the rest unread: the caller decides what becomes of the connection.
func (b *LengthBody) Close() error { return nil }

// body is a request's body, which its handler may read only until it returns.
type body struct {
	LengthBody
	mu   sync.Mutex
	done bool // the handler has returned
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, errBodyDone
	}
	return b.LengthBody.Read(p)
}

// read says whether the body has been read to its end, after which the connection is no longer
// its to read. A read under way means not yet.
func (b *body) read() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return b.remain == 0 || b.done
}

// finish ends the body once the handler has returned, reading what it left, and says whether the
// connection can go on: not when a read is still under way (a transport still sending the body
// on), nor when too much is left.
func (b *body) finish() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	b.done = true
	if b.remain == 0 {
		return true
	}
	if b.remain > maxDiscard {
		return false
	}
	n, err := b.br.Discard(int(b.remain))
	b.remain -= int64(n)
	return err == nil
}
