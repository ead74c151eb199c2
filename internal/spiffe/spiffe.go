// Package spiffe names workload identities: SPIFFE IDs of the form
// spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>. The proxy and the control plane share it.
package spiffe

import (
	"fmt"
	"net/url"
	"strings"
)

// ID is a workload identity.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String is the ID's URI form.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the ID as a URL, for a certificate's subject alternative names.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Username is the Kubernetes user name a ServiceAccount token for this identity authenticates as.
func (id ID) Username() string {
	return "system:serviceaccount:" + id.Namespace + ":" + id.ServiceAccount
}

// Parse reads a workload identity from its URI form.
func Parse(s string) (ID, error) {
	if len(s) > 2048 {
		return ID{}, fmt.Errorf("identity of %d bytes is longer than 2048", len(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q is not a URI: %w", s, err)
	}
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return ID{}, fmt.Errorf("identity %q is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>)", s)
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "ns" || parts[3] != "sa" || parts[2] == "" || parts[4] == "" {
		return ID{}, fmt.Errorf("identity %q is not a workload identity (spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>)", s)
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[2], ServiceAccount: parts[4]}
	if id.String() != s {
		return ID{}, fmt.Errorf("identity %q is not in canonical form %q", s, id.String())
	}
	return id, nil
}
