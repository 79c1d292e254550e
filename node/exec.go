package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Exec travels over NATS request/reply on capstan.exec.<node>, streamed as
// stream.go describes; the end message carries Capstan-Exit-Code. It is not
// interactive: no stdin, no terminal.

// ExecRequest asks a node to run a command in a pod's container.
type ExecRequest struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"` // default: the pod's only app container
	Command   []string `json:"command"`
}

const headerExitCode = "Capstan-Exit-Code"

// ExecSubject is the subject a node serves exec requests on.
func ExecSubject(node string) string { return "capstan.exec." + node }

func (d *Daemon) serveExec(ctx context.Context, nc *nats.Conn, m *nats.Msg) {
	var req ExecRequest
	serveStream(ctx, nc, m, &req, func(ctx context.Context, stdout, stderr io.Writer) (map[string]string, error) {
		if len(req.Command) == 0 {
			return nil, errors.New("no command to run")
		}
		id, err := d.findContainer(ctx, req.Namespace, req.Pod, req.Container, false)
		if err != nil {
			return nil, err
		}
		code, err := d.Runtime.Exec(ctx, id, req.Command, nil, stdout, stderr)
		switch {
		case errors.Is(err, ErrConflict):
			return nil, fmt.Errorf("container of pod %s/%s is not running", req.Namespace, req.Pod)
		case err != nil:
			return nil, err
		}
		return map[string]string{headerExitCode: strconv.Itoa(code)}, nil
	})
}

// RemoteExec asks node to run req's command, copies its output to stdout
// and stderr until it ends, and returns its exit code. A node that does not
// answer within 5 s is an ErrNoNode; when ctx ends first, the node is told
// to stop waiting and ctx's error is returned.
func RemoteExec(ctx context.Context, nc *nats.Conn, node string, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	h, err := callStream(ctx, nc, ExecSubject(node), "exec on node "+node, req, stdout, stderr)
	if err != nil {
		return -1, err
	}
	code, err := strconv.Atoi(h.Get(headerExitCode))
	if err != nil {
		return -1, fmt.Errorf("exec on node %s: no exit code in the reply", node)
	}
	return code, nil
}
