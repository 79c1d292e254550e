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

	"github.com/capstan-io/capstan/bus/natsbus"
)

// Logs and exec share one streaming protocol over NATS request/reply: the
// client sends its request with a reply inbox; the node publishes one
// message with the header Capstan-Start, then the output in chunks
// (stderr's marked Capstan-Stream: stderr), then one message with
// Capstan-End carrying the result headers, or Capstan-Error when the
// request failed. A client that gives up publishes anything to
// <inbox>.cancel.

const (
	headerStart  = "Capstan-Start"
	headerEnd    = "Capstan-End"
	headerError  = "Capstan-Error"
	headerStream = "Capstan-Stream"
)

// ErrDenied is returned when the bus refuses the request to this
// identity (logs and exec are for operators and admins).
var ErrDenied = errors.New("these credentials may not ask for this (operators and admins only)")

// ErrNoNode is returned when no node daemon answers a request.
var ErrNoNode = errors.New("no node daemon answered")

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

// serveStream answers one streamed request: it decodes the request into
// req, runs fn with writers for stdout and stderr and a context that ends
// when the client gives up, and ends the stream with the headers fn returns
// or its error.
func serveStream(ctx context.Context, nc *nats.Conn, m *nats.Msg, req any,
	fn func(ctx context.Context, stdout, stderr io.Writer) (map[string]string, error)) {
	start := nats.NewMsg(m.Reply)
	start.Header.Set(headerStart, "1")
	_ = nc.PublishMsg(start)
	end := nats.NewMsg(m.Reply)
	end.Header.Set(headerEnd, "1")
	defer func() { _ = nc.PublishMsg(end); _ = nc.Flush() }()
	if err := json.Unmarshal(m.Data, req); err != nil {
		end.Header.Set(headerError, "bad request: "+err.Error())
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cs, err := nc.Subscribe(m.Reply+".cancel", func(*nats.Msg) { cancel() }); err == nil {
		defer func() { _ = cs.Unsubscribe() }()
	}
	var mu sync.Mutex
	headers, err := fn(ctx, streamWriter{nc: nc, reply: m.Reply, mu: &mu}, streamWriter{nc: nc, reply: m.Reply, stderr: true, mu: &mu})
	if err != nil {
		end.Header.Set(headerError, err.Error())
		return
	}
	for k, v := range headers {
		end.Header.Set(k, v)
	}
}

// callStream sends req to subject and copies the streamed output to stdout
// and stderr until the node ends the stream; it returns the end message's
// headers. A node that does not answer within 5 s is an ErrNoNode; when ctx
// ends first the node is told to stop and ctx's error is returned.
func callStream(ctx context.Context, nc *nats.Conn, subject, what string, req any, stdout, stderr io.Writer) (nats.Header, error) {
	inbox := nc.NewRespInbox()
	msgs := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Reply, m.Data = inbox, b
	switch err := natsbus.PublishChecked(nc, m, 5*time.Second); {
	case errors.Is(err, natsbus.ErrPermission):
		return nil, fmt.Errorf("%s: %w", what, ErrDenied)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	first := time.NewTimer(5 * time.Second)
	defer first.Stop()
	got := false
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-first.C:
			if !got {
				return nil, fmt.Errorf("%s: %w", what, ErrNoNode)
			}
		case m := <-msgs:
			got = true
			switch {
			case noResponders(m):
				return nil, fmt.Errorf("%s: %w", what, ErrNoNode)
			case m.Header.Get(headerStart) != "":
			case m.Header.Get(headerEnd) != "":
				finished = true
				if e := m.Header.Get(headerError); e != "" {
					return nil, errors.New(e)
				}
				return m.Header, nil
			case m.Header.Get(headerStream) == "stderr":
				if _, err := stderr.Write(m.Data); err != nil {
					return nil, err
				}
			default:
				if _, err := stdout.Write(m.Data); err != nil {
					return nil, err
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
