package fake

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/capstan-io/capstan/node"
)

// ExecResult is what a scripted command does: its exit code and output.
type ExecResult struct {
	ExitCode       int
	Stdout, Stderr string
	// Err, when set, is returned by Exec instead (the runtime failed, not
	// the command).
	Err error
}

// ExecFunc scripts the commands Exec runs. It is given the container's
// configuration (its name, labels...) and the command, and is called
// without the Runtime's lock held, so it may block and may call the
// Runtime (to make the container exit, say).
type ExecFunc func(ctx context.Context, c node.ContainerConfig, cmd []string) ExecResult

// ExecCall records one Exec.
type ExecCall struct {
	ContainerID string
	Container   string // the container's configured name
	Labels      map[string]string
	Cmd         []string
}

// SetExec scripts Exec; nil restores the default, which interprets the
// same tiny shell as a container's command line ("echo", "exit N", "true",
// "false"; anything else succeeds with no output).
func (r *Runtime) SetExec(fn ExecFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execFn = fn
}

// Execs returns the calls to Exec made so far, in order.
func (r *Runtime) Execs() []ExecCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.execs)
}

// Exec runs cmd through the ExecFunc set with SetExec. A missing container
// is node.ErrNotFound; one that is not running, node.ErrConflict.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	r.mu.Lock()
	c, err := r.running(id)
	if err != nil {
		r.mu.Unlock()
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	cfg := c.cfg
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.Env = maps.Clone(cfg.Env)
	fn := r.execFn
	r.execs = append(r.execs, ExecCall{ContainerID: id, Container: cfg.Name, Labels: maps.Clone(cfg.Labels), Cmd: slices.Clone(cmd)})
	r.mu.Unlock()
	if fn == nil {
		fn = defaultExec
	}
	res := fn(ctx, cfg, cmd)
	if res.Err != nil {
		return -1, res.Err
	}
	if stdout != nil && res.Stdout != "" {
		if _, err := io.WriteString(stdout, res.Stdout); err != nil {
			return -1, fmt.Errorf("exec in %s: %w", id, err)
		}
	}
	if stderr != nil && res.Stderr != "" {
		if _, err := io.WriteString(stderr, res.Stderr); err != nil {
			return -1, fmt.Errorf("exec in %s: %w", id, err)
		}
	}
	return res.ExitCode, nil
}

// defaultExec interprets a command as the fake's containers do.
func defaultExec(_ context.Context, c node.ContainerConfig, cmd []string) ExecResult {
	if len(cmd) >= 3 && base(cmd[0]) == "sh" && cmd[1] == "-c" {
		ctr := &container{cfg: c}
		code, _ := script(ctr, cmd[2])
		var res ExecResult
		res.ExitCode = int(code)
		for _, l := range ctr.logs {
			if l.stderr {
				res.Stderr += l.text + "\n"
			} else {
				res.Stdout += l.text + "\n"
			}
		}
		return res
	}
	if len(cmd) == 0 {
		return ExecResult{ExitCode: 127, Stderr: "no command\n"}
	}
	switch base(cmd[0]) {
	case "echo":
		return ExecResult{Stdout: strings.Join(cmd[1:], " ") + "\n"}
	case "false":
		return ExecResult{ExitCode: 1}
	}
	return ExecResult{}
}
