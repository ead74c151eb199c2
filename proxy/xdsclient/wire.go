package xdsclient

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The proxy reads the few fields it uses of xDS messages straight from their wire form, and writes
// its requests the same way: go-control-plane's Go types register thousands of descriptors at start-up
// and cost every proxy several MB of resident memory for fields it never reads. Field numbers are
// those of Envoy's v3 API (envoy/service/discovery/v3/discovery.proto and the resources' protos).

// walk calls f with each field of a message in order: v holds a length-delimited field's bytes, x a
// varint's or a fixed field's value. A repeated or map field comes once per element.
func walk(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// fields calls f with each length-delimited field of a message; others are skipped.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		return f(num, v)
	})
}

// anyMsg is a google.protobuf.Any: type_url 1, value 2.
type anyMsg struct {
	typeURL string
	value   []byte
}

func readAny(b []byte) (anyMsg, error) {
	var a anyMsg
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			a.typeURL = string(v)
		case 2:
			a.value = v
		}
		return nil
	})
	return a, err
}

// metaValue is a google.protobuf.Value of Skein's metadata, reduced to the kinds its fields use.
type metaValue struct {
	kind string // "null", "number", "string", "bool", "struct" or "list"
	str  string
	b    bool
}

func (v *metaValue) String() string {
	switch v.kind {
	case "string":
		return fmt.Sprintf("%q", v.str)
	case "bool":
		return fmt.Sprint(v.b)
	}
	return "a " + v.kind
}

// skeinFields reads Metadata.filter_metadata (1, a map to google.protobuf.Struct) and returns
// Skein's fields: the entries of the Struct under xdsnames.MetadataKey.
func skeinFields(md []byte, key string) (map[string]*metaValue, error) {
	var out map[string]*metaValue
	err := fields(md, func(num protowire.Number, entry []byte) error {
		if num != 1 {
			return nil
		}
		k, st, err := mapEntry(entry)
		if err != nil || k != key {
			return err
		}
		out = map[string]*metaValue{}
		// Struct: fields (1), a map to Value.
		return fields(st, func(num protowire.Number, entry []byte) error {
			if num != 1 {
				return nil
			}
			name, val, err := mapEntry(entry)
			if err != nil {
				return err
			}
			v, err := readValue(val)
			out[name] = v
			return err
		})
	})
	return out, err
}

// mapEntry reads a map entry whose key (1) is a string and value (2) a message.
func mapEntry(b []byte) (key string, value []byte, err error) {
	err = fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			key = string(v)
		case 2:
			value = v
		}
		return nil
	})
	return key, value, err
}

// readValue reads a google.protobuf.Value: null 1, number 2, string 3, bool 4, struct 5, list 6.
func readValue(b []byte) (*metaValue, error) {
	v := &metaValue{kind: "null"}
	err := walk(b, func(num protowire.Number, _ protowire.Type, s []byte, x uint64) error {
		switch num {
		case 1:
			v.kind = "null"
		case 2:
			v.kind = "number"
		case 3:
			v.kind, v.str = "string", string(s)
		case 4:
			v.kind, v.b = "bool", x != 0
		case 5:
			v.kind = "struct"
		case 6:
			v.kind = "list"
		}
		return nil
	})
	return v, err
}

// deltaRequest is what the proxy sends of a DeltaDiscoveryRequest.
type deltaRequest struct {
	node                    *node             // 1
	typeURL                 string            // 2
	subscribe               []string          // 3
	initialResourceVersions map[string]string // 5
	responseNonce           string            // 6
	errorDetail             *status           // 7
}

// node is the proxy's core.v3.Node: id 1, cluster 2, user_agent_name 6.
type node struct{ id, cluster, userAgentName string }

// status is a google.rpc.Status: code 1, message 2.
type status struct {
	code    int32
	message string
}

func (r *deltaRequest) marshal() []byte {
	var b []byte
	if r.node != nil {
		var n []byte
		n = appendString(n, 1, r.node.id)
		n = appendString(n, 2, r.node.cluster)
		n = appendString(n, 6, r.node.userAgentName)
		b = appendBytes(b, 1, n)
	}
	b = appendString(b, 2, r.typeURL)
	for _, s := range r.subscribe {
		b = appendBytes(b, 3, []byte(s))
	}
	for k, v := range r.initialResourceVersions {
		var e []byte
		e = appendBytes(e, 1, []byte(k))
		e = appendBytes(e, 2, []byte(v))
		b = appendBytes(b, 5, e)
	}
	b = appendString(b, 6, r.responseNonce)
	if r.errorDetail != nil {
		var s []byte
		if r.errorDetail.code != 0 {
			s = protowire.AppendTag(s, 1, protowire.VarintType)
			s = protowire.AppendVarint(s, uint64(int64(r.errorDetail.code)))
		}
		s = appendString(s, 2, r.errorDetail.message)
		b = appendBytes(b, 7, s)
	}
	return b
}

// appendString appends a string field, left out when empty as proto3 does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendBytes(b, num, []byte(s))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// deltaResponse is what the proxy reads of a DeltaDiscoveryResponse.
type deltaResponse struct {
	typeURL   string          // 4
	resources []deltaResource // 2
	removed   []string        // 6
	nonce     string          // 5
}

// deltaResource is a discovery.v3.Resource: version 1, resource 2 (an Any), name 3.
type deltaResource struct {
	name, version string
	resource      *anyMsg
}

func unmarshalResponse(b []byte) (*deltaResponse, error) {
	r := &deltaResponse{}
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 2:
			var res deltaResource
			err := fields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					res.version = string(v)
				case 2:
					a, err := readAny(v)
					if err != nil {
						return err
					}
					res.resource = &a
				case 3:
					res.name = string(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			r.resources = append(r.resources, res)
		case 4:
			r.typeURL = string(v)
		case 5:
			r.nonce = string(v)
		case 6:
			r.removed = append(r.removed, string(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("a DeltaDiscoveryResponse that does not parse: %w", err)
	}
	return r, nil
}

// rawCodec lets gRPC carry the messages above as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*deltaRequest)
	if !ok {
		return nil, fmt.Errorf("xdsclient: cannot marshal %T", v)
	}
	return r.marshal(), nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("xdsclient: cannot unmarshal into %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
