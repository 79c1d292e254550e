package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Logs travel over NATS request/reply: the client sends a LogRequest to
// capstan.logs.<node> with a reply inbox; the node publishes the output to
// that inbox in chunks, then one message with the header Capstan-End (and
// Capstan-Error when it failed). A following client ends the stream by
// publishing anything to <inbox>.cancel.

// LogRequest asks a node for a container's output.
type LogRequest struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"` // default: the pod's only container
	Follow    bool   `json:"follow,omitempty"`
	Tail      int    `json:"tail,omitempty"` // <= 0: all
	Previous  bool   `json:"previous,omitempty"`
}

const (
	headerStart = "Capstan-Start"
	headerEnd   = "Capstan-End"
	headerError = "Capstan-Error"
)

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

type chunkWriter struct {
	nc    *nats.Conn
	reply string
}

func (w chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += 32 * 1024 {
		end := min(off+32*1024, len(p))
		if err := w.nc.Publish(w.reply, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (d *Daemon) serveLog(ctx context.Context, nc *nats.Conn, m *nats.Msg) {
	start := nats.NewMsg(m.Reply)
	start.Header.Set(headerStart, "1")
	_ = nc.PublishMsg(start)
	end := nats.NewMsg(m.Reply)
	end.Header.Set(headerEnd, "1")
	defer func() { _ = nc.PublishMsg(end); _ = nc.Flush() }()
	var req LogRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		end.Header.Set(headerError, "bad request: "+err.Error())
		return
	}
	id, err := d.findContainer(ctx, req.Namespace, req.Pod, req.Container, req.Previous)
	if err != nil {
		end.Header.Set(headerError, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := nc.Subscribe(m.Reply+".cancel", func(*nats.Msg) { cancel() })
	if err == nil {
		defer func() { _ = cs.Unsubscribe() }()
	}
	tail := req.Tail
	if tail <= 0 {
		tail = -1
	}
	if err := d.Runtime.ContainerLogs(ctx, id, req.Follow, tail, chunkWriter{nc, m.Reply}); err != nil && ctx.Err() == nil {
		end.Header.Set(headerError, err.Error())
	}
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

// ErrNoNode is returned by FetchLogs when no node answers.
var ErrNoNode = errors.New("no node daemon answered")

// FetchLogs asks node for logs and copies them to w until the node ends the
// stream or ctx ends. A node that does not answer within 5 s is an
// ErrNoNode.
func FetchLogs(ctx context.Context, nc *nats.Conn, node string, req LogRequest, w io.Writer) error {
	inbox := nc.NewRespInbox()
	msgs := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	var once sync.Once
	cancel := func() { once.Do(func() { _ = nc.Publish(inbox+".cancel", nil) }) }
	defer cancel()
	b, _ := json.Marshal(req)
	if err := nc.PublishRequest(LogsSubject(node), inbox, b); err != nil {
		return err
	}
	first := time.NewTimer(5 * time.Second)
	defer first.Stop()
	got := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-first.C:
			if !got {
				return fmt.Errorf("logs from node %s: %w", node, ErrNoNode)
			}
		case m := <-msgs:
			got = true
			if noResponders(m) {
				return fmt.Errorf("logs from node %s: %w", node, ErrNoNode)
			}
			if m.Header.Get(headerStart) != "" {
				continue
			}
			if m.Header.Get(headerEnd) != "" {
				if e := m.Header.Get(headerError); e != "" {
					return errors.New(e)
				}
				return nil
			}
			if _, err := w.Write(m.Data); err != nil {
				return err
			}
		}
	}
}
