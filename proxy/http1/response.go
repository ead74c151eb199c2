package http1

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

var errAfterHandler = errors.New("http: response written after its handler returned")

// response is the http.ResponseWriter of one request. A body of unknown length is held back, up
// to the buffer's size, until the handler returns or flushes, so that a short one is sent with a
// Content-Length, as net/http does; a longer or flushed one is sent chunked.
type response struct {
	c       *serverConn
	req     *http.Request
	header  http.Header
	status  int
	written int64

	wroteHeader, committed, chunked, done bool
	bodyless                              bool  // HEAD, 204, 304
	contentLength                         int64 // from the header, or -1
	closeAfter                            bool  // the connection ends after this response
}

func (w *response) Header() http.Header { return w.header }

// SetHeader replaces the header, which package forward does rather than copy a response's into it.
func (w *response) SetHeader(h http.Header) { w.header = h }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.done {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.status, w.wroteHeader = code, true
	w.bodyless = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if vv := w.header["Content-Length"]; len(vv) == 1 {
		if n, ok := ParseLength(vv[0]); ok {
			w.contentLength = n
		}
	}
	if w.contentLength < 0 {
		delete(w.header, "Content-Length")
	}
}

// informational sends a 1xx response at once, with the header as it stands.
func (w *response) informational(code int) {
	bw := w.c.bw
	statusLine(bw, code)
	for k, vv := range w.header {
		WriteField(bw, k, vv)
	}
	bw.WriteString("\r\n")
	bw.Flush()
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.bodyless {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.contentLength < 0 && len(w.c.held)+len(p) <= bufSize {
			w.c.held = append(w.c.held, p...)
			return len(p), nil
		}
		w.commit(false)
	}
	return w.body(p)
}

// body writes p as the framing says.
func (w *response) body(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		n, err := bw.Write(p)
		bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(p)
}

// commit writes the status line and the header, with the framing of the body: its length when
// known (from the header, or the handler done with all of it held), else chunks.
func (w *response) commit(final bool) {
	w.committed = true
	bw := w.c.bw
	statusLine(bw, w.status)
	trailers := false
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			trailers = true
			continue
		}
		if k == "Trailer" {
			trailers = true
		}
		WriteField(bw, k, vv)
	}
	if _, ok := w.header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(date())
		bw.WriteString("\r\n")
	}
	if !w.bodyless && w.contentLength < 0 {
		if final && !trailers { // trailers need chunks
			bw.WriteString("Content-Length: ")
			bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(w.c.held)), 10))
			bw.WriteString("\r\n")
		} else {
			w.chunked = true
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		}
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	held := w.c.held
	w.c.held = held[:0]
	w.body(held)
}

// Flush sends the header and what is written of the body.
func (w *response) Flush() {
	if w.done {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	w.c.bw.Flush()
}

// finish completes the response once the handler has returned: the header if still unsent, the
// last chunk and the trailers. A body shorter than its Content-Length leaves the connection to be
// closed, so that the client sees it cut.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	w.done = true
	if w.chunked {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		w.trailers()
		bw.WriteString("\r\n")
	}
	if !w.bodyless && w.contentLength >= 0 && w.written < w.contentLength {
		w.closeAfter = true
	}
}

// trailers writes those the Trailer header announced and those set with http.TrailerPrefix.
func (w *response) trailers() {
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vv := w.header[k]; len(vv) > 0 {
				WriteField(w.c.bw, k, vv)
			}
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			WriteField(w.c.bw, http.CanonicalHeaderKey(name), vv)
		}
	}
}

// statusLine writes "HTTP/1.1 200 OK".
func statusLine(bw io.StringWriter, code int) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(Status(code))
	bw.WriteString("\r\n")
}

// statuses are the Status of each code, "200 OK", made once rather than per response.
var statuses = func() (texts [1000]string) {
	for code := 100; code < len(texts); code++ {
		texts[code] = strconv.Itoa(code) + " " + http.StatusText(code)
	}
	return texts
}()

// Status is a response's status as net/http's Response.Status has it: "200 OK". h2peer's
// responses take theirs from it too.
func Status(code int) string {
	if code >= 100 && code < len(statuses) {
		return statuses[code]
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// WriteField writes a header field's values, each on its line. Names that are not tokens are
// left out and line breaks in values become spaces, as net/http does, so that no value can start
// a field or a response of its own.
func WriteField(bw io.StringWriter, k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	for _, v := range vv {
		bw.WriteString(k)
		bw.WriteString(": ")
		if strings.ContainsAny(v, "\r\n") {
			v = lineBreaks.Replace(v)
		}
		bw.WriteString(strings.TrimSpace(v))
		bw.WriteString("\r\n")
	}
}

var lineBreaks = strings.NewReplacer("\r", " ", "\n", " ")

// dateNow is the Date header's value for the current second, made once a second.
var dateNow atomic.Pointer[dated]

type dated struct {
	unix int64
	s    string
}

func date() string {
	now := time.Now()
	if d := dateNow.Load(); d != nil && d.unix == now.Unix() {
		return d.s
	}
	d := &dated{now.Unix(), now.UTC().Format(http.TimeFormat)}
	dateNow.Store(d)
	return d.s
}
