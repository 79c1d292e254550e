package node

import (
	"context"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
)

// Logs travel over NATS request/reply on capstan.logs.<node>, streamed as
// stream.go describes.

// LogRequest asks a node for a container's output.
type LogRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"` // default: the pod's only container
	Follow    bool   `json:"follow,omitempty"`
	Tail      int    `json:"tail,omitempty"` // <= 0: all
	Previous  bool   `json:"previous,omitempty"`
}

// LogsSubject is the subject a node serves logs on.
func LogsSubject(node string) string { return "capstan.logs." + node }

// ServeLogs answers log and exec requests (see exec.go) for this node
// until ctx ends.
func (d *Daemon) ServeLogs(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.Subscribe(LogsSubject(d.Name), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		d.wg.Go(func() { d.serveLog(ctx, nc, m) })
	})
	if err != nil {
		return fmt.Errorf("serve logs: %w", err)
	}
	esub, err := nc.Subscribe(ExecSubject(d.Name), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		d.wg.Go(func() { d.serveExec(ctx, nc, m) })
	})
	if err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("serve exec: %w", err)
	}
	<-ctx.Done()
	_ = esub.Unsubscribe()
	return sub.Unsubscribe()
}

func (d *Daemon) serveLog(ctx context.Context, nc *nats.Conn, m *nats.Msg) {
	var req LogRequest
	serveStream(ctx, nc, m, &req, func(ctx context.Context, stdout, _ io.Writer) (map[string]string, error) {
		id, err := d.findContainer(ctx, req.Namespace, req.Pod, req.Container, req.Previous)
		if err != nil {
			return nil, err
		}
		tail := req.Tail
		if tail <= 0 {
			tail = -1
		}
		if err := d.Runtime.ContainerLogs(ctx, id, req.Follow, tail, stdout); err != nil && ctx.Err() == nil {
			return nil, err
		}
		return nil, nil
	})
}

// findContainer returns the runtime ID of a pod's container (an app or an
// init container): its latest instance, or the one before with previous.
// Without a name, the pod's only app container.
func (d *Daemon) findContainer(ctx context.Context, ns, pod, name string, previous bool) (string, error) {
	pods, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelPod: ns + "/" + pod})
	if err != nil {
		return "", err
	}
	if len(pods) == 0 {
		return "", fmt.Errorf("pod %s/%s is not running on node %s", ns, pod, d.Name)
	}
	if name == "" {
		names := map[string]bool{}
		for _, c := range pods[0].Containers {
			if !isInit(c) {
				names[c.Labels[LabelContainer]] = true
			}
		}
		if len(names) != 1 {
			return "", fmt.Errorf("pod %s/%s has %d containers: name one with -c", ns, pod, len(names))
		}
		for n := range names {
			name = n
		}
	}
	inst := instances(&pods[0], name)
	switch {
	case len(inst) == 0:
		return "", fmt.Errorf("container %s of pod %s/%s has not started", name, ns, pod)
	case previous && len(inst) < 2:
		return "", fmt.Errorf("container %s of pod %s/%s has no previous instance", name, ns, pod)
	case previous:
		return inst[len(inst)-2].ID, nil
	}
	return inst[len(inst)-1].ID, nil
}

// FetchLogs asks node for logs and copies them to w until the node ends the
// stream or ctx ends (which is not an error: it is how a follower stops).
// A node that does not answer within 5 s is an ErrNoNode.
func FetchLogs(ctx context.Context, nc *nats.Conn, node string, req LogRequest, w io.Writer) error {
	_, err := callStream(ctx, nc, LogsSubject(node), "logs from node "+node, req, w, w)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}
