package natsauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// ActionTokenCreated is the history's action for a join token issued.
const ActionTokenCreated = "token-created"

// ActionServerCertRotated is the history's action for a new server
// certificate.
const ActionServerCertRotated = "server-cert-rotated"

// Actions of signing-key rotations in the history.
const (
	ActionSigningKeyRotated  = "signing-key-rotated"
	ActionSigningKeysRetired = "signing-keys-retired"
)

// RenewInterval is how often a node daemon renews its credentials.
const RenewInterval = 10 * time.Minute

// DefaultTokenTTL is how long a join token lives unless told.
const DefaultTokenTTL = time.Hour

// Record is one identity record in the identities bucket, under
// token.<id>, node.<name> or user.<name>.
type Record struct {
	Kind string `json:"kind"` // token, node, user
	Name string `json:"name"`
	Role string `json:"role,omitempty"`
	// Key is the identity's public nkey (none for a token).
	Key string `json:"key,omitempty"`
	// SigningKey is the account signing key that signed the identity's
	// current JWT.
	SigningKey string `json:"signingKey,omitempty"`
	// SecretHash is a token's secret, hashed.
	SecretHash string    `json:"secretHash,omitempty"`
	Expires    time.Time `json:"expires,omitzero"`
	Used       time.Time `json:"used,omitzero"`
	UsedBy     string    `json:"usedBy,omitempty"`
	Issued     time.Time `json:"issued"`
	IssuedBy   string    `json:"issuedBy,omitempty"`
	Revoked    time.Time `json:"revoked,omitzero"`
	RevokedBy  string    `json:"revokedBy,omitempty"`
}

// Service answers the requests that need the authority: nodes joining
// with a token, and the admin requests (join tokens, people's
// credentials, revocations). It runs in the control plane.
type Service struct {
	Authority *Authority
	// CA is the bus CA's certificate, handed to joining nodes and in
	// client configs.
	CA []byte
	// Server is the bus URL written into client configs.
	Server string
	// Identities is the identities bucket.
	Identities bus.Store
	// Push applies the account JWT to the servers after a revocation.
	Push func(ctx context.Context) error
	// Record appends one entry to the history (an action of manifests'
	// Action constants, or ActionTokenCreated); nil records nothing.
	Record func(ctx context.Context, actor, action, subject, detail string) error
	// Rotated is called once a new signing key is current (the control
	// plane re-issues its own credentials with it).
	Rotated func()
	// RotateServerCert issues a new server certificate and has the
	// servers use it; it says what it did.
	RotateServerCert func(ctx context.Context) (string, error)
	Log              *slog.Logger
}

// Run serves the requests on nc until ctx ends.
func (s *Service) Run(ctx context.Context, nc *nats.Conn) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	handlers := map[string]func(context.Context, *nats.Msg) (any, error){
		SubjectJoin:                         s.join,
		AdminSubject(VerbTokenCreate):       s.admin(s.tokenCreate),
		AdminSubject(VerbCredentialsCreate): s.admin(s.credentialsCreate),
		AdminSubject(VerbCredentialsRevoke): s.admin(s.revoke("user")),
		AdminSubject(VerbNodeRevoke):        s.admin(s.revoke("node")),
		AdminSubject(VerbRotateServerCert):  s.admin(s.rotateServerCert),
		AdminSubject(VerbRotateSigningKey):  s.admin(s.rotateSigningKey),
		AdminSubject(VerbRetireSigningKeys): s.admin(s.retireSigningKeys),
		SubjectRenew:                        s.renew,
	}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for subject, h := range handlers {
		sub, err := nc.QueueSubscribe(subject, "capstan-control-plane", func(m *nats.Msg) {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			out, err := h(rctx, m)
			var resp []byte
			if err != nil {
				s.Log.Warn("request refused", "subject", subject, "err", err)
				resp, _ = json.Marshal(map[string]string{"error": err.Error()})
			} else {
				resp, _ = json.Marshal(out)
			}
			_ = m.Respond(resp)
		})
		if err != nil {
			return fmt.Errorf("serve %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	<-ctx.Done()
	return nil
}

// admin verifies that a request is signed by an admin before handling it.
func (s *Service) admin(h func(context.Context, Identity, []byte) (any, error)) func(context.Context, *nats.Msg) (any, error) {
	return func(ctx context.Context, m *nats.Msg) (any, error) {
		id, err := s.Authority.VerifyRequest(m)
		if err != nil {
			return nil, err
		}
		if id.Role != RoleAdmin && id.Role != RoleControlPlane {
			return nil, fmt.Errorf("%s may not do this: admins only", id)
		}
		return h(ctx, id, m.Data)
	}
}

// JoinRequest is what a joining node sends.
type JoinRequest struct {
	Token  string `json:"token"` // the token's id
	Secret string `json:"secret"`
	Node   string `json:"node"`
	// Key is the node's public nkey; its seed never leaves the node.
	Key string `json:"key"`
}

// Issued is the answer to a join or a credentials request.
type Issued struct {
	JWT    string `json:"jwt"`
	CA     string `json:"ca"`
	Server string `json:"server,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *Service) join(ctx context.Context, m *nats.Msg) (any, error) {
	var req JoinRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return nil, errors.New("join: bad request")
	}
	if err := CheckName(req.Node); err != nil {
		return nil, fmt.Errorf("join: node %w", err)
	}
	if !nkeys.IsValidPublicUserKey(req.Key) {
		return nil, errors.New("join: not a user public key")
	}
	key := "token." + req.Token
	e, err := s.Identities.Get(ctx, key)
	if err != nil {
		return nil, errors.New("join: unknown join token")
	}
	var tok Record
	if err := json.Unmarshal(e.Value, &tok); err != nil {
		return nil, errors.New("join: unknown join token")
	}
	sum := sha256.Sum256([]byte(req.Secret))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(tok.SecretHash)) != 1 {
		return nil, errors.New("join: unknown join token")
	}
	switch {
	case !tok.Used.IsZero():
		return nil, fmt.Errorf("join: the join token was already used (by node %s); create another", tok.UsedBy)
	case !tok.Revoked.IsZero():
		return nil, errors.New("join: the join token was revoked")
	case time.Now().After(tok.Expires):
		return nil, errors.New("join: the join token has expired; create another")
	}
	tok.Used, tok.UsedBy = time.Now().UTC(), req.Node
	b, _ := json.Marshal(tok)
	if _, err := s.Identities.Update(ctx, key, b, e.Revision); err != nil {
		return nil, errors.New("join: the join token was already used; create another")
	}
	userJWT, err := s.issue(ctx, Record{Kind: "node", Name: req.Node, Role: RoleNode, Key: req.Key, IssuedBy: tok.IssuedBy}, true)
	if err != nil {
		return nil, err
	}
	s.record(ctx, "node:"+req.Node, manifests.ActionNodeJoin, "node/"+req.Node, fmt.Sprintf("joined with join token %s, issued by %s", req.Token, tok.IssuedBy))
	return Issued{JWT: userJWT, CA: string(s.CA), Server: s.Server}, nil
}

// issue signs rec's credentials and records them, revoking an earlier
// identity of the same name when replace says so (a node re-joining).
func (s *Service) issue(ctx context.Context, rec Record, replace bool) (string, error) {
	key := rec.Kind + "." + rec.Name
	if e, err := s.Identities.Get(ctx, key); err == nil {
		var old Record
		if json.Unmarshal(e.Value, &old) == nil && old.Revoked.IsZero() && old.Key != rec.Key {
			if !replace {
				return "", fmt.Errorf("%s %s already has credentials: revoke them first", rec.Kind, rec.Name)
			}
			if err := s.revokeKey(ctx, old.Key); err != nil {
				return "", err
			}
		}
	}
	userJWT, err := s.Authority.Issue(User{Name: rec.Name, Role: rec.Role, Key: rec.Key})
	if err != nil {
		return "", err
	}
	rec.Issued, rec.SigningKey = time.Now().UTC(), issuerOf(userJWT)
	b, _ := json.Marshal(rec)
	if _, err := s.Identities.Put(ctx, key, b); err != nil {
		return "", fmt.Errorf("record the credentials of %s: %w", rec.Name, err)
	}
	return userJWT, nil
}

// Register records an identity issued outside the service (the admin
// config that capstan up writes).
func (s *Service) Register(ctx context.Context, rec Record, userJWT string) error {
	rec.Issued, rec.SigningKey = time.Now().UTC(), issuerOf(userJWT)
	b, _ := json.Marshal(rec)
	_, err := s.Identities.Put(ctx, rec.Kind+"."+rec.Name, b)
	return err
}

// TokenRequest asks for a join token.
type TokenRequest struct {
	TTL time.Duration `json:"ttl"`
}

// TokenReply carries a join token.
type TokenReply struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

func (s *Service) tokenCreate(ctx context.Context, id Identity, data []byte) (any, error) {
	var req TokenRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, errors.New("token create: bad request")
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	tokID := randomHex(6)
	boot, err := s.Authority.NewCreds(tokID, RoleJoin, ttl)
	if err != nil {
		return nil, err
	}
	caHash, err := CAHash(s.CA)
	if err != nil {
		return nil, err
	}
	tok := JoinToken{ID: tokID, Secret: randomString(32), CAHash: caHash, JWT: boot.JWT, Seed: string(boot.Seed)}
	sum := sha256.Sum256([]byte(tok.Secret))
	exp := time.Now().Add(ttl).UTC()
	rec := Record{Kind: "token", Name: tokID, SecretHash: hex.EncodeToString(sum[:]), Expires: exp, Issued: time.Now().UTC(), IssuedBy: id.String()}
	b, _ := json.Marshal(rec)
	if _, err := s.Identities.Create(ctx, "token."+tokID, b); err != nil {
		return nil, fmt.Errorf("record the token: %w", err)
	}
	s.record(ctx, id.String(), ActionTokenCreated, "token/"+tokID, "valid until "+exp.Format(time.RFC3339))
	return TokenReply{Token: tok.String(), Expires: exp}, nil
}

// CredentialsRequest asks for a person's credentials.
type CredentialsRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Key  string `json:"key"`
}

func (s *Service) credentialsCreate(ctx context.Context, id Identity, data []byte) (any, error) {
	var req CredentialsRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, errors.New("credentials create: bad request")
	}
	if err := CheckName(req.Name); err != nil {
		return nil, err
	}
	switch req.Role {
	case RoleViewer, RoleOperator, RoleAdmin:
	default:
		return nil, fmt.Errorf("role %q: want viewer, operator or admin", req.Role)
	}
	if !nkeys.IsValidPublicUserKey(req.Key) {
		return nil, errors.New("credentials create: not a user public key")
	}
	userJWT, err := s.issue(ctx, Record{Kind: "user", Name: req.Name, Role: req.Role, Key: req.Key, IssuedBy: id.String()}, false)
	if err != nil {
		return nil, err
	}
	s.record(ctx, id.String(), manifests.ActionCredentialsIssued, req.Role+":"+req.Name, "")
	return Issued{JWT: userJWT, CA: string(s.CA), Server: s.Server}, nil
}

// RevokeRequest names whose credentials to revoke.
type RevokeRequest struct {
	Name string `json:"name"`
}

// RevokeReply says what was revoked.
type RevokeReply struct {
	Revoked string `json:"revoked"`
}

func (s *Service) revoke(kind string) func(context.Context, Identity, []byte) (any, error) {
	return func(ctx context.Context, id Identity, data []byte) (any, error) {
		var req RevokeRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, errors.New("revoke: bad request")
		}
		key := kind + "." + req.Name
		e, err := s.Identities.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("no %s named %q has credentials", kind, req.Name)
		}
		var rec Record
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return nil, err
		}
		if err := s.revokeKey(ctx, rec.Key); err != nil {
			return nil, err
		}
		if rec.Revoked.IsZero() {
			rec.Revoked, rec.RevokedBy = time.Now().UTC(), id.String()
			b, _ := json.Marshal(rec)
			if _, err := s.Identities.Put(ctx, key, b); err != nil {
				return nil, err
			}
		}
		action, subject := manifests.ActionCredentialsRevoked, rec.Role+":"+req.Name
		if kind == "node" {
			action, subject = manifests.ActionNodeRevoked, "node/"+req.Name
		}
		s.record(ctx, id.String(), action, subject, "")
		return RevokeReply{Revoked: kind + "/" + req.Name}, nil
	}
}

// RotateReply says what a rotation did.
type RotateReply struct {
	Done string `json:"done"`
}

func (s *Service) rotateServerCert(ctx context.Context, id Identity, _ []byte) (any, error) {
	if s.RotateServerCert == nil {
		return nil, errors.New("this control plane cannot rotate the server certificate")
	}
	done, err := s.RotateServerCert(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotate the server certificate: %w", err)
	}
	s.record(ctx, id.String(), ActionServerCertRotated, "server-certificate", done)
	return RotateReply{Done: done}, nil
}

// renew re-issues the credentials of the identity that signed the
// request, for the same key, with the current signing key and its role's
// current permissions.
func (s *Service) renew(ctx context.Context, m *nats.Msg) (any, error) {
	id, err := s.Authority.VerifyRequest(m)
	if err != nil {
		return nil, err
	}
	kind := "user"
	if id.Role == RoleNode {
		kind = "node"
	}
	key := kind + "." + id.Name
	e, err := s.Identities.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("renew: %s has no record", id)
	}
	var rec Record
	if err := json.Unmarshal(e.Value, &rec); err != nil || rec.Key != id.Key || !rec.Revoked.IsZero() {
		return nil, fmt.Errorf("renew: %s holds no current credentials", id)
	}
	userJWT, err := s.Authority.Issue(User{Name: rec.Name, Role: rec.Role, Key: rec.Key})
	if err != nil {
		return nil, err
	}
	if signer := issuerOf(userJWT); signer != rec.SigningKey {
		rec.SigningKey = signer
		b, _ := json.Marshal(rec)
		if _, err := s.Identities.Update(ctx, key, b, e.Revision); err != nil {
			return nil, fmt.Errorf("renew: %w", err)
		}
	}
	return Issued{JWT: userJWT}, nil
}

func (s *Service) rotateSigningKey(ctx context.Context, id Identity, _ []byte) (any, error) {
	if err := s.Authority.RotateSigningKey(); err != nil {
		return nil, err
	}
	if s.Push != nil {
		if err := s.Push(ctx); err != nil {
			return nil, err
		}
	}
	if s.Rotated != nil {
		s.Rotated()
	}
	cur := s.Authority.SigningKeys()[0]
	s.record(ctx, id.String(), ActionSigningKeyRotated, "signing-key/"+cur, "")
	return RotateReply{Done: "new signing key " + cur + ": nodes renew their credentials within " + RenewInterval.String() +
		", people with capstan credentials renew; then capstan auth retire-signing-keys"}, nil
}

// RetireRequest retires the old signing keys.
type RetireRequest struct {
	// Force retires them although identities still use them (they are
	// refused from then on).
	Force bool `json:"force"`
}

func (s *Service) retireSigningKeys(ctx context.Context, id Identity, data []byte) (any, error) {
	var req RetireRequest
	_ = json.Unmarshal(data, &req)
	cur := s.Authority.SigningKeys()[0]
	entries, err := s.Identities.List(ctx, ">")
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, e := range entries {
		var rec Record
		if json.Unmarshal(e.Value, &rec) != nil || rec.Kind == "token" || !rec.Revoked.IsZero() || rec.SigningKey == cur {
			continue
		}
		stale = append(stale, rec.Kind+"/"+rec.Name)
	}
	if len(stale) > 0 && !req.Force {
		return nil, fmt.Errorf("still signed by an old key: %s (they renew on their own within %s; --force refuses them from now on)", strings.Join(stale, ", "), RenewInterval)
	}
	if err := s.Authority.RetireSigningKeys(); err != nil {
		return nil, err
	}
	if s.Push != nil {
		if err := s.Push(ctx); err != nil {
			return nil, err
		}
	}
	s.record(ctx, id.String(), ActionSigningKeysRetired, "signing-key/"+cur, strings.Join(stale, ", "))
	return RotateReply{Done: "only " + cur + " signs identities now"}, nil
}

// issuerOf is the key that signed a JWT.
func issuerOf(userJWT string) string {
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return ""
	}
	return uc.Issuer
}

func (s *Service) revokeKey(ctx context.Context, key string) error {
	if err := s.Authority.Revoke(key); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if s.Push != nil {
		if err := s.Push(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) record(ctx context.Context, actor, action, subject, detail string) {
	if s.Record == nil {
		return
	}
	if err := s.Record(ctx, actor, action, subject, detail); err != nil {
		s.Log.Warn("record in the history", "action", action, "err", err)
	}
}
