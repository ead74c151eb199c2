// Package preamble is what a proxy sends a multicluster gateway right after the mTLS handshake, before
// anything else: the service the connection is for (see package gateway for the whole exchange).
// Client and gateway both import it; it imports neither.
package preamble

import (
	"errors"
	"fmt"
	"io"

	"github.com/skeinmesh/skein/internal/xdsnames"
)

// version is the first byte, so that the form can change without being misread.
const version = 1

// Write sends the preamble naming target, an xdsnames.Authority: the version byte, the target's
// length as one byte, then the target.
func Write(w io.Writer, target string) error {
	if _, err := xdsnames.ParseAuthority(target); err != nil {
		return fmt.Errorf("gateway target: %w", err)
	}
	_, err := w.Write(append([]byte{version, byte(len(target))}, target...))
	return err
}

// Read reads a preamble and returns its target, checked to be an authority of the mesh.
func Read(r io.Reader) (string, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return "", fmt.Errorf("reading the gateway preamble: %w", err)
	}
	if head[0] != version {
		return "", fmt.Errorf("gateway preamble version %d, want %d", head[0], version)
	}
	if head[1] == 0 {
		return "", errors.New("the gateway preamble names no target")
	}
	target := make([]byte, head[1])
	if _, err := io.ReadFull(r, target); err != nil {
		return "", fmt.Errorf("reading the gateway preamble's target: %w", err)
	}
	if _, err := xdsnames.ParseAuthority(string(target)); err != nil {
		return "", fmt.Errorf("gateway target: %w", err)
	}
	return string(target), nil
}
