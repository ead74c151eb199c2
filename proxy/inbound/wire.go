package inbound

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/skeinmesh/skein/proxy/http1"
)

// The application's side of an exchange, on the wire: what appClient writes and reads for the
// plain requests and responses that nearly all are, without net/http's general writer and reader
// (their sorting, copies and textproto's allocations). Anything else takes net/http's way.

// writeRequest writes the head of a request without a body, as req.Write would: the request line,
// Host, the header less the fields Write leaves out or makes itself, Connection: close when asked.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if req.URL.Opaque != "" || !httpguts.ValidHostHeader(host) || !asciiOnly(host) {
		return req.Write(bw) // which makes such a Host valid, or says why not
	}
	bw.WriteString(req.Method)
	bw.WriteString(" ")
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent": // the first value only, and none when empty, as Write does
			if len(vv) == 0 || vv[0] == "" {
				continue
			}
			vv = vv[:1]
		}
		http1.WriteField(bw, k, vv)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		bw.WriteString("Connection: close\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// leanResponse reads a plain response to req whose head is in br's buffer: HTTP/1.1, a final
// status other than 204 and 304, a Content-Length and no Transfer-Encoding or Trailer, every line
// well formed, for a request other than HEAD. It returns nil, having read nothing, for any other,
// which http.ReadResponse then reads.
func leanResponse(br *bufio.Reader, req *http.Request) *http.Response {
	if req.Method == http.MethodHead {
		return nil
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	head := string(buf[:end+4])
	line, rest, _ := strings.Cut(head, "\r\n")
	status, ok := strings.CutPrefix(line, "HTTP/1.1 ")
	if !ok || len(status) < 3 || len(status) > 3 && status[3] != ' ' || !httpguts.ValidHeaderFieldValue(status) {
		return nil
	}
	code := 0
	for _, c := range []byte(status[:3]) {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil
	}
	res := &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req}
	lengths, length := 0, ""
	res.Header = http1.Fields(rest, func(key, value string) (add, ok bool) {
		switch key {
		case "Content-Length":
			lengths++
			length = value
		case "Transfer-Encoding", "Trailer":
			return false, false
		}
		return true, true
	})
	if res.Header == nil || lengths != 1 {
		return nil
	}
	if httpguts.HeaderValuesContainsToken(res.Header["Connection"], "close") {
		res.Close = true
		delete(res.Header, "Connection") // as ReadResponse does
	}
	n, ok := http1.ParseLength(length)
	if !ok {
		return nil
	}
	br.Discard(len(head))
	res.ContentLength = n
	res.Body = http.NoBody
	if n > 0 {
		res.Body = http1.NewLengthBody(br, n)
	}
	return res
}
