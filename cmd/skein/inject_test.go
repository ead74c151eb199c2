package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func runInject(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newInjectCommand()
	var out, errOut bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestInjectOffline(t *testing.T) {
	dir := t.TempDir()
	mc := filepath.Join(dir, "meshconfig.yaml")
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(mc, []byte("apiVersion: mesh.skein.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\nspec:\n  injection: {sidecarMode: Classic}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte(pem), 0o644); err != nil {
		t.Fatal(err)
	}
	in := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: app, image: app}]\n"
	out, stderr, err := runInject(t, in, "-f", "-", "--meshconfig", mc, "--trust-bundle", bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "job/once injected") {
		t.Errorf("stderr = %q, want it to say the Job was injected", stderr)
	}
	// Classic, as the MeshConfig file asks: the proxy leads the containers.
	if !strings.Contains(out, "containers:\n      - env:") || !strings.Contains(out, "name: skein-proxy") || !strings.Contains(out, "- await") {
		t.Errorf("output lacks the classic sidecar:\n%s", out)
	}
}

func TestInjectBadInvocations(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no file", nil, "-f is required"},
		{"half offline", []string{"-f", "-", "--meshconfig", "mc.yaml"}, "--meshconfig and --trust-bundle go together"},
		{"missing file", []string{"-f", "/nonexistent/deploy.yaml"}, "/nonexistent/deploy.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runInject(t, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one that says %q", err, tt.wantErr)
			}
		})
	}
}
