package h2peer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock decodes the peer's header blocks, as x/net's Framer does with ReadMetaHeaders and
// with the same checks, into a MetaHeadersFrame and a list of fields that the connection reuses
// from one block to the next: the Framer makes both afresh each time and grows the list field by
// field, a fifth of the bytes a request through two proxies allocates. A block's frame and fields
// are valid until the reader reads the next frame, as the Framer's frames are; handlers copy what
// they keep.
type headerBlock struct {
	dec    *hpack.Decoder
	meta   http2.MetaHeadersFrame
	fields []hpack.HeaderField

	// State of the block being decoded, for emit.
	remain     uint32 // of the header list size the peer may still send
	sawRegular bool
	invalid    error
}

func newHeaderBlock() *headerBlock {
	b := &headerBlock{}
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(maxHeaderList)
	return b
}

func (b *headerBlock) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.invalid = errors.New("pseudo header field after regular")
		}
	} else {
		b.sawRegular = true
		if !validWireName(hf.Name) {
			b.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if b.invalid != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	size := hf.Size()
	if size > b.remain {
		b.dec.SetEmitEnabled(false)
		b.meta.Truncated = true
		b.remain = 0
		return
	}
	b.remain -= size
	b.fields = append(b.fields, hf)
}

// read decodes the block that hf starts, reading its CONTINUATION frames from fr. A malformed
// field is a StreamError (the block was decoded whole, so hpack's state is sound); a block the
// decoder cannot read, or one far over the size allowed, is a ConnectionError.
func (b *headerBlock) read(fr *http2.Framer, hf *http2.HeadersFrame) (*http2.MetaHeadersFrame, error) {
	b.meta = http2.MetaHeadersFrame{HeadersFrame: hf}
	b.fields = b.fields[:0]
	b.remain, b.sawRegular, b.invalid = maxHeaderList, false, nil
	b.dec.SetEmitEnabled(true)
	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for first := true; ; first = false {
		// Do not decode much of what would be thrown away: a fragment far over what may still
		// come, or one after a field already found invalid, which stopped the counting.
		if int64(len(frag)) > 2*int64(b.remain) || !first && b.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := b.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf, ok := f.(*http2.ContinuationFrame) // the Framer checks that it is, on this stream
		if !ok {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := b.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	b.meta.Fields = b.fields
	if b.invalid == nil {
		b.invalid = checkPseudos(b.meta.PseudoFields())
	}
	if b.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: b.invalid}
	}
	return &b.meta, nil
}

// validWireName is a field name as HTTP/2 sends it: a token, in lower case.
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudos allows the pseudo-header fields of a request or of a response, each once.
func checkPseudos(pf []hpack.HeaderField) error {
	var request, response bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, earlier := range pf[:i] {
			if hf.Name == earlier.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if request && response {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}
