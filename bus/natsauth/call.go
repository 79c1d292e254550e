package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/nats-io/nkeys"
)

// Call sends a signed request (Sign) with req as JSON and decodes the
// control plane's reply into reply; a reply carrying an error becomes
// that error.
func Call(ctx context.Context, nc *nats.Conn, creds Creds, subject string, req, reply any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if err := Sign(m, creds); err != nil {
		return err
	}
	return request(ctx, nc, m, reply)
}

func request(ctx context.Context, nc *nats.Conn, m *nats.Msg, reply any) error {
	resp, err := RequestMsg(ctx, nc, m)
	switch {
	case errors.Is(err, natsbus.ErrPermission):
		return errors.New("these credentials may not do this")
	case errors.Is(err, nats.ErrNoResponders):
		return errors.New("no control plane answered (is capstan server running?)")
	case err != nil:
		return err
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(resp.Data, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return json.Unmarshal(resp.Data, reply)
}

// RequestMsg sends m and waits for one reply until ctx ends (15 s when it
// has no deadline). Unlike nc.RequestMsg it hears a refusal: a publish the
// server refuses fails at once with natsbus.ErrPermission, where the
// request would wait out its timeout; no responder is nats.ErrNoResponders.
func RequestMsg(ctx context.Context, nc *nats.Conn, m *nats.Msg) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.AutoUnsubscribe(1); err != nil {
		return nil, err
	}
	m.Reply = inbox
	if err := natsbus.PublishChecked(nc, m, 5*time.Second); err != nil {
		return nil, err
	}
	resp, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	if len(resp.Data) == 0 && resp.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return resp, nil
}

// Join exchanges a join token for a node's own credentials: it connects
// as the token's bootstrap user, trusting only the CA the token pins, and
// sends the node's new public key; the seed never leaves this process.
// It returns the node's credentials and the bus CA certificate.
func Join(ctx context.Context, url string, tok JoinToken, node string) (Creds, []byte, error) {
	if exp := tok.Expires(); !exp.IsZero() && time.Now().After(exp) {
		return Creds{}, nil, fmt.Errorf("the join token expired at %s; create another with capstan token create", exp.Format(time.RFC3339))
	}
	if err := CheckName(node); err != nil {
		return Creds{}, nil, fmt.Errorf("node %w", err)
	}
	boot := tok.Creds()
	nc, err := nats.Connect(url, nats.Secure(PinnedTLS(tok.CAHash)), nats.UserJWTAndSeed(boot.JWT, string(boot.Seed)),
		nats.CustomInboxPrefix(InboxPrefix(RoleJoin, tok.ID)), nats.Name("capstan-join-"+node))
	if err != nil {
		return Creds{}, nil, explainJoin(err, url)
	}
	defer nc.Close()
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Creds{}, nil, err
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	data, _ := json.Marshal(JoinRequest{Token: tok.ID, Secret: tok.Secret, Node: node, Key: pub})
	m := nats.NewMsg(SubjectJoin)
	m.Data = data
	var out Issued
	if err := request(ctx, nc, m, &out); err != nil {
		return Creds{}, nil, fmt.Errorf("join the bus at %s: %w", url, err)
	}
	return Creds{JWT: out.JWT, Seed: seed}, []byte(out.CA), nil
}

func explainJoin(err error, url string) error {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("the bus at %s refused the join token (expired, already used or revoked, or for another bus)", url)
	}
	return Explain(err, url)
}

// Renew asks the control plane to sign creds' key again with the current
// signing key (after a rotation), and returns the renewed credentials.
func Renew(ctx context.Context, nc *nats.Conn, creds Creds) (Creds, error) {
	var out Issued
	if err := Call(ctx, nc, creds, SubjectRenew, struct{}{}, &out); err != nil {
		return Creds{}, fmt.Errorf("renew the credentials: %w", err)
	}
	renewed := Creds{JWT: out.JWT, Seed: creds.Seed}
	if k, err := renewed.PublicKey(); err != nil || k != mustKey(creds) {
		return Creds{}, errors.New("renew the credentials: the answer is for another key")
	}
	return renewed, nil
}

func mustKey(c Creds) string {
	k, _ := c.PublicKey()
	return k
}
