package atrest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/manifests"
)

// Request subjects the control plane answers (one of its queue group
// each). Only admins may publish to capstan.secrets.> (the server's
// permissions, bus/natsauth).
const (
	// SubjectReveal: RevealRequest -> RevealReply, Secrets with their
	// values.
	SubjectReveal = "capstan.secrets.reveal"
	// SubjectRotate: an empty request -> RotateReply.
	SubjectRotate = "capstan.secrets.rotate"
)

// RevealRequest names the Secrets to show: one (Name), a namespace's
// (Name ""), or all (Namespace "" too).
type RevealRequest struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

// RevealReply holds the Secrets asked for, each with its values and its
// resourceVersion.
type RevealReply struct {
	Items []json.RawMessage `json:"items"`
	Error string            `json:"error,omitempty"`
}

// RotateReply is a rotation's outcome.
type RotateReply struct {
	Result
	Error string `json:"error,omitempty"`
}

// Subscribe answers reveal and rotate requests on nc, with ctx, until stop
// is called; stop waits for the answers under way.
func (s *Store) Subscribe(ctx context.Context, nc *nats.Conn) (stop func() error, err error) {
	var wg sync.WaitGroup
	respond := func(m *nats.Msg, handle func(context.Context, []byte) any) {
		if m.Reply == "" {
			return
		}
		wg.Go(func() {
			b, _ := json.Marshal(handle(ctx, m.Data))
			if err := m.Respond(b); err != nil {
				s.log.Warn("answer secrets request", "subject", m.Subject, "err", err)
			}
		})
	}
	reveal, err := nc.QueueSubscribe(SubjectReveal, "capstan-secrets", func(m *nats.Msg) {
		respond(m, func(ctx context.Context, data []byte) any { return s.reveal(ctx, data) })
	})
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", SubjectReveal, err)
	}
	rotate, err := nc.QueueSubscribe(SubjectRotate, "capstan-secrets", func(m *nats.Msg) {
		respond(m, func(ctx context.Context, _ []byte) any {
			res, err := s.Rotate(ctx)
			if err != nil {
				s.log.Error("secrets key rotation", "key", res.Key, "reencrypted", res.Reencrypted, "err", err)
				return RotateReply{Result: res, Error: err.Error()}
			}
			s.log.Info("secrets key rotated", "key", res.Key, "reencrypted", res.Reencrypted,
				"unreadable", len(res.Unreadable), "dropped", res.Dropped, "kept", res.Kept)
			return RotateReply{Result: res}
		})
	})
	if err != nil {
		_ = reveal.Unsubscribe()
		return nil, fmt.Errorf("serve %s: %w", SubjectRotate, err)
	}
	return func() error {
		err := errors.Join(reveal.Unsubscribe(), rotate.Unsubscribe())
		wg.Wait()
		return err
	}, nil
}

// reveal reads the Secrets a request names, values decrypted. A SOPS
// Secret shows as committed: the control plane opens it only into the
// assignments of the nodes that use it.
func (s *Store) reveal(ctx context.Context, data []byte) RevealReply {
	var req RevealRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return RevealReply{Error: "bad request: " + err.Error()}
	}
	for _, t := range []string{req.Namespace, req.Name} {
		if strings.ContainsAny(t, "*> \t") {
			return RevealReply{Error: "bad request: a name or namespace may not hold wildcards"}
		}
	}
	pattern := keyPrefix + ">"
	switch {
	case req.Name != "":
		if req.Namespace == "" {
			req.Namespace = "default"
		}
		pattern = manifests.Key("Secret", req.Namespace, req.Name)
	case req.Namespace != "":
		pattern = keyPrefix + req.Namespace + ".>"
	}
	entries, err := s.List(ctx, pattern)
	if err != nil {
		return RevealReply{Error: err.Error()}
	}
	out := RevealReply{Items: []json.RawMessage{}}
	for _, e := range entries {
		var sec manifests.Secret
		if err := json.Unmarshal(e.Value, &sec); err != nil {
			continue
		}
		sec.ResourceVersion = strconv.FormatUint(e.Revision, 10)
		b, err := json.Marshal(&sec)
		if err != nil {
			continue
		}
		out.Items = append(out.Items, b)
	}
	s.log.Info("secret values shown", "namespace", req.Namespace, "name", req.Name, "secrets", len(out.Items))
	return out
}

// ErrRefused: the bus refused a request to the control plane: the
// client may not publish there (only admins may), or nothing answers.
var ErrRefused = errors.New("refused")

// Request sends req on subject and decodes the answer into reply. A
// permissions violation on subject, or no responders, is ErrRefused,
// told at once rather than after the timeout. It sets nc's error handler
// for its duration: one request at a time per connection.
func Request(ctx context.Context, nc *nats.Conn, subject string, req, reply any, timeout time.Duration) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	// The server answers a publish it denies with an asynchronous error,
	// not on the request: watch for it while the request waits.
	refused := make(chan error, 1)
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			select {
			case refused <- err:
			default:
			}
			return // told to the caller
		}
		if prev != nil {
			prev(c, sub, err)
		}
	})
	defer nc.SetErrorHandler(prev)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type answer struct {
		m   *nats.Msg
		err error
	}
	done := make(chan answer, 1)
	go func() {
		m, err := nc.RequestWithContext(ctx, subject, b)
		done <- answer{m, err}
	}()
	var a answer
	select {
	case err := <-refused:
		cancel()
		return fmt.Errorf("%w: %s", ErrRefused, err)
	case a = <-done:
	}
	switch {
	case errors.Is(a.err, nats.ErrNoResponders):
		return fmt.Errorf("%w: no control plane answers %s", ErrRefused, subject)
	case a.err != nil:
		select {
		case err := <-refused:
			return fmt.Errorf("%w: %s", ErrRefused, err)
		default:
		}
		return fmt.Errorf("ask the control plane (%s): %w", subject, a.err)
	}
	if err := json.Unmarshal(a.m.Data, reply); err != nil {
		return fmt.Errorf("the control plane's answer: %w", err)
	}
	return nil
}

// Reveal asks the control plane for Secrets with their values.
func Reveal(ctx context.Context, nc *nats.Conn, req RevealRequest) ([]*manifests.Secret, error) {
	var rep RevealReply
	if err := Request(ctx, nc, SubjectReveal, req, &rep, 30*time.Second); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	out := make([]*manifests.Secret, 0, len(rep.Items))
	for _, it := range rep.Items {
		var sec manifests.Secret
		if err := json.Unmarshal(it, &sec); err != nil {
			return nil, fmt.Errorf("the control plane's answer: %w", err)
		}
		out = append(out, &sec)
	}
	return out, nil
}

// RequestRotate asks the control plane to rotate the key.
func RequestRotate(ctx context.Context, nc *nats.Conn) (Result, error) {
	var rep RotateReply
	if err := Request(ctx, nc, SubjectRotate, struct{}{}, &rep, 10*time.Minute); err != nil {
		return Result{}, err
	}
	if rep.Error != "" {
		return rep.Result, errors.New(rep.Error)
	}
	return rep.Result, nil
}
