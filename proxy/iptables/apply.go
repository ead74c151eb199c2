package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Backend is a pair of iptables-save and iptables-restore commands of one kind: nf_tables or
// legacy x_tables. Rules written with one are invisible to the other, so Skein uses the one the
// system has chosen as plain `iptables-restore` (on Debian, the alternatives system picks it).
type Backend struct {
	// Restore and Save are the commands' paths.
	Restore, Save string
	// Mode is what the command says it drives: "nf_tables" or "legacy".
	Mode string
}

// candidates are tried in order: the system's default first, then each kind by its own name.
var candidates = []struct{ restore, save string }{
	{"iptables-restore", "iptables-save"},
	{"iptables-nft-restore", "iptables-nft-save"},
	{"iptables-legacy-restore", "iptables-legacy-save"},
}

// DetectBackend finds the iptables commands to use.
func DetectBackend(ctx context.Context) (Backend, error) {
	for _, c := range candidates {
		restore, err := lookPath(c.restore)
		if err != nil {
			continue
		}
		save, err := lookPath(c.save)
		if err != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, restore, "--version").CombinedOutput()
		if err != nil {
			return Backend{}, fmt.Errorf("running %s --version: %w: %s", restore, err, bytes.TrimSpace(out))
		}
		mode := "legacy"
		if strings.Contains(string(out), "nf_tables") {
			mode = "nf_tables"
		}
		return Backend{Restore: restore, Save: save, Mode: mode}, nil
	}
	return Backend{}, errors.New("no iptables-restore found (tried iptables-restore, iptables-nft-restore and iptables-legacy-restore): install the iptables package")
}

// lookPath also looks in the sbin directories, which a non-login shell's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Apply installs c's rules in the current network namespace with the system's iptables,
// replacing any earlier version of them.
func Apply(ctx context.Context, c Config) error {
	b, err := DetectBackend(ctx)
	if err != nil {
		return err
	}
	return b.Apply(ctx, c)
}

// Remove takes Skein's rules out of the current network namespace; it does nothing when there are
// none.
func Remove(ctx context.Context) error {
	b, err := DetectBackend(ctx)
	if err != nil {
		return err
	}
	return b.Remove(ctx)
}

// Apply installs c's rules with b, replacing any earlier version of them.
func (b Backend) Apply(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	saved, err := b.saveNAT(ctx)
	if err != nil {
		return err
	}
	doc, err := RestoreOver(c, saved)
	if err != nil {
		return err
	}
	return b.restore(ctx, doc)
}

// Remove takes Skein's rules out with b.
func (b Backend) Remove(ctx context.Context) error {
	saved, err := b.saveNAT(ctx)
	if err != nil {
		return err
	}
	doc := Removal(saved)
	if doc == "" {
		return nil
	}
	return b.restore(ctx, doc)
}

func (b Backend) saveNAT(ctx context.Context) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.Save, "-t", "nat")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("reading the nat table with %s: %w: %s", b.Save, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

func (b Backend) restore(ctx context.Context, doc string) error {
	// --noflush keeps the table's other rules; -w waits for the xtables lock instead of failing
	// when another program holds it (the nf_tables backend accepts and ignores it).
	cmd := exec.CommandContext(ctx, b.Restore, "-w", "--noflush")
	cmd.Stdin = strings.NewReader(doc)
	if out, err := cmd.CombinedOutput(); err != nil {
		// iptables-restore names the failing line by number, so show the document numbered.
		var numbered strings.Builder
		for i, line := range strings.Split(strings.TrimSuffix(doc, "\n"), "\n") {
			fmt.Fprintf(&numbered, "%3d  %s\n", i+1, line)
		}
		return fmt.Errorf("%s: %w: %s\nwith input:\n%s", b.Restore, err, bytes.TrimSpace(out), numbered.String())
	}
	return nil
}
