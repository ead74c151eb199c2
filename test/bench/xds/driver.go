package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// clientProcess is the benchmark's handle on the client process (see clients.go): the same binary,
// run again with the "clients" subcommand, so that the clients' memory and goroutines stay out of
// the control plane's process.
type clientProcess struct {
	cmd      *exec.Cmd
	commands io.WriteCloser
	messages chan message
	// exited is closed once the process has exited, with its error in exitErr.
	exited  chan struct{}
	exitErr error
}

// writeClientsConfig writes cfg into dir for the client process, and returns its path.
func writeClientsConfig(dir string, cfg *clientsConfig) (string, error) {
	path := filepath.Join(dir, "clients.json")
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, b, 0o600)
}

// startClients starts the client process on the configuration at path.
func startClients(path string) (*clientProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "clients", "-config", path)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the client process: %w", err)
	}
	p := &clientProcess{cmd: cmd, commands: stdin, messages: make(chan message, 1), exited: make(chan struct{})}
	go func() {
		lines := bufio.NewScanner(stdout)
		lines.Buffer(nil, 64<<20) // a message carries a time per client
		for lines.Scan() {
			text, ok := strings.CutPrefix(lines.Text(), msgPrefix)
			if !ok {
				fmt.Fprintln(os.Stderr, "clients:", lines.Text())
				continue
			}
			var m message
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				m = message{Kind: "failed", Error: fmt.Sprintf("unreadable message %q: %v", text, err)}
			}
			p.messages <- m
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// next waits for the client process's next message, which must be of kind want.
func (p *clientProcess) next(ctx context.Context, want string, timeout time.Duration) (message, error) {
	var m message
	select {
	case m = <-p.messages:
	case <-p.exited:
		select {
		case m = <-p.messages: // its last words
		default:
			return message{}, fmt.Errorf("the client process exited: %v", p.exitErr)
		}
	case <-time.After(timeout):
		return message{}, fmt.Errorf("no %q from the client process after %s", want, timeout)
	case <-ctx.Done():
		return message{}, ctx.Err()
	}
	if m.Kind != want {
		return m, fmt.Errorf("the client process failed: %s", m.Error)
	}
	return m, nil
}

// waitWeight asks for, and waits for, each client's ACK of the apex route with weight w.
func (p *clientProcess) waitWeight(ctx context.Context, w uint32) (message, error) {
	if _, err := fmt.Fprintf(p.commands, "wait %d\n", w); err != nil {
		return message{}, err
	}
	return p.next(ctx, "acked", ackTimeout+10*time.Second)
}

// stop ends the client process: closing its commands tells it to disconnect and exit, which it
// does once it is waiting for a command; before that, it is killed.
func (p *clientProcess) stop() error {
	p.commands.Close()
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return p.cmd.Process.Kill()
	}
}
