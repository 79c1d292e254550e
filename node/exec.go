package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Exec travels over NATS request/reply as logs do: the client sends an
// ExecRequest to capstan.exec.<node> with a reply inbox; the node publishes
// one message with the header Capstan-Start, then the command's output in
// chunks (stderr's with the header Capstan-Stream: stderr), then one
// message with Capstan-End and Capstan-Exit-Code (or Capstan-Error when the
// command could not run). A client that gives up publishes anything to
// <inbox>.cancel. It is not interactive: no stdin, no terminal.

// ExecRequest asks a node to run a command in a pod's container.
type ExecRequest struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"` // default: the pod's only app container
	Command   []string `json:"command"`
}

const (
	headerStream   = "Capstan-Stream"
	headerExitCode = "Capstan-Exit-Code"
)

// ExecSubject is the subject a node serves exec requests on.
func ExecSubject(node string) string { return "capstan.exec." + node }

// streamWriter publishes what is written to a reply inbox in chunks,
// marked as stderr when it is.
type streamWriter struct {
	nc     *nats.Conn
	reply  string
	stderr bool
	mu     *sync.Mutex // one for both streams: chunks keep their order
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for off := 0; off < len(p); off += 32 * 1024 {
		m := nats.NewMsg(w.reply)
		m.Data = p[off:min(off+32*1024, len(p))]
		if w.stderr {
			m.Header.Set(headerStream, "stderr")
		}
		if err := w.nc.PublishMsg(m); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (d *Daemon) serveExec(ctx context.Context, nc *nats.Conn, m *nats.Msg) {
	start := nats.NewMsg(m.Reply)
	start.Header.Set(headerStart, "1")
	_ = nc.PublishMsg(start)
	end := nats.NewMsg(m.Reply)
	end.Header.Set(headerEnd, "1")
	defer func() { _ = nc.PublishMsg(end); _ = nc.Flush() }()
	var req ExecRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		end.Header.Set(headerError, "bad request: "+err.Error())
		return
	}
	if len(req.Command) == 0 {
		end.Header.Set(headerError, "no command to run")
		return
	}
	id, err := d.findContainer(ctx, req.Namespace, req.Pod, req.Container, false)
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
	var mu sync.Mutex
	code, err := d.Runtime.Exec(ctx, id, req.Command, nil,
		streamWriter{nc: nc, reply: m.Reply, mu: &mu}, streamWriter{nc: nc, reply: m.Reply, stderr: true, mu: &mu})
	switch {
	case errors.Is(err, ErrConflict):
		end.Header.Set(headerError, fmt.Sprintf("container of pod %s/%s is not running", req.Namespace, req.Pod))
	case err != nil:
		end.Header.Set(headerError, err.Error())
	default:
		end.Header.Set(headerExitCode, strconv.Itoa(code))
	}
}

// RemoteExec asks node to run req's command, copies its output to stdout
// and stderr until it ends, and returns its exit code. A node that does not
// answer within 5 s is an ErrNoNode; when ctx ends first, the node is told
// to stop waiting and ctx's error is returned.
func RemoteExec(ctx context.Context, nc *nats.Conn, node string, req ExecRequest, stdout, stderr io.Writer) (int, error) {
	inbox := nc.NewRespInbox()
	msgs := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return -1, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	finished := false
	defer func() {
		if !finished {
			_ = nc.Publish(inbox+".cancel", nil)
		}
	}()
	b, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	if err := nc.PublishRequest(ExecSubject(node), inbox, b); err != nil {
		return -1, err
	}
	first := time.NewTimer(5 * time.Second)
	defer first.Stop()
	got := false
	for {
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-first.C:
			if !got {
				return -1, fmt.Errorf("exec on node %s: %w", node, ErrNoNode)
			}
		case m := <-msgs:
			got = true
			switch {
			case noResponders(m):
				return -1, fmt.Errorf("exec on node %s: %w", node, ErrNoNode)
			case m.Header.Get(headerStart) != "":
			case m.Header.Get(headerEnd) != "":
				finished = true
				if e := m.Header.Get(headerError); e != "" {
					return -1, errors.New(e)
				}
				code, err := strconv.Atoi(m.Header.Get(headerExitCode))
				if err != nil {
					return -1, fmt.Errorf("exec on node %s: no exit code in the reply", node)
				}
				return code, nil
			case m.Header.Get(headerStream) == "stderr":
				if _, err := stderr.Write(m.Data); err != nil {
					return -1, err
				}
			default:
				if _, err := stdout.Write(m.Data); err != nil {
					return -1, err
				}
			}
		}
	}
}

// noResponders reports whether m is the server's answer to a request that
// no subscriber received.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
