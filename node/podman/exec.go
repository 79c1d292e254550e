//go:build remote

package podman

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"

	"github.com/capstan-io/capstan/node"
)

// Exec runs cmd in a running container and returns its exit code. A missing
// container is node.ErrNotFound; one that is not running, node.ErrConflict.
//
// Each call uses a connection of its own: the bindings' attach replaces the
// HTTP transport of the connection it is given, which would race with every
// other call on a shared one. When ctx ends before the command does, Exec
// returns ctx's error at once; the command itself runs on in the container
// until it ends (the API cannot signal an exec session), and its further
// output is dropped.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	base, err := bindings.GetClient(r.conn)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	conn, err := bindings.NewConnection(ctx, base.URI.String())
	if err != nil {
		return -1, fmt.Errorf("exec in %s: connect: %w", id, err)
	}
	if c, err := bindings.GetClient(conn); err == nil {
		defer c.Client.CloseIdleConnections()
	}
	bctx := connCtx{Context: ctx, conn: conn}

	cfg := new(handlers.ExecCreateConfig)
	cfg.AttachStdout = true
	cfg.AttachStderr = true
	cfg.AttachStdin = stdin != nil
	cfg.Cmd = cmd
	session, err := containers.ExecCreate(bctx, id, cfg)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, r.execErr(bctx, id, err))
	}
	// The session is removed with a context of its own, so a command cut
	// short by ctx does not leave it behind once it ends.
	cleanup := func() {
		_ = containers.ExecRemove(connCtx{Context: context.WithoutCancel(ctx), conn: conn}, session, nil)
	}

	out, errw := &gatedWriter{w: stdout}, &gatedWriter{w: stderr}
	opts := new(containers.ExecStartAndAttachOptions).
		WithOutputStream(out).WithErrorStream(errw).
		WithAttachOutput(true).WithAttachError(true)
	if stdin != nil {
		opts.WithInputStream(*bufio.NewReader(stdin)).WithAttachInput(true)
	}
	done := make(chan error, 1)
	go func() { done <- containers.ExecStartAndAttach(bctx, session, opts) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		out.close()
		errw.close()
		go func() { <-done; cleanup() }()
		return -1, fmt.Errorf("exec in %s: %w", id, ctx.Err())
	}
	defer cleanup()
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, apiErr(err))
	}
	insp, err := containers.ExecInspect(bctx, session, nil)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: inspect session: %w", id, apiErr(err))
	}
	return insp.ExitCode, nil
}

// execErr maps a failed exec creation. Podman 4.3 answers 500, not 409,
// for a container that is not running, so rather than read the message,
// ask.
func (r *Runtime) execErr(ctx context.Context, id string, err error) error {
	err = apiErr(err)
	if errors.Is(err, node.ErrNotFound) || errors.Is(err, node.ErrConflict) {
		return err
	}
	data, ierr := containers.Inspect(ctx, id, nil)
	if ierr != nil {
		if errors.Is(apiErr(ierr), node.ErrNotFound) {
			return fmt.Errorf("%w: %w", node.ErrNotFound, err)
		}
		return err
	}
	if data.State != nil && !data.State.Running {
		return fmt.Errorf("container is %s: %w: %w", data.State.Status, node.ErrConflict, err)
	}
	return err
}

// gatedWriter forwards writes to w (which may be nil) until closed, after
// which it drops them: the output of a command the caller stopped waiting
// for must not reach the caller's buffers.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.w == nil {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}
