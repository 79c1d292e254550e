package natsauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
)

// service runs the identity service on a production-configured bus.
func service(t *testing.T) (*natsauthtest.Bus, *[]string) {
	t.Helper()
	b := natsauthtest.Start(t)
	ca, err := b.Setup.PKI.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	sysCreds, err := b.Setup.Authority.SystemUser()
	if err != nil {
		t.Fatal(err)
	}
	sopts, err := natsauth.ClientOptions(ca, sysCreds)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(b.URL, sopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	var records []string
	svc := &natsauth.Service{Authority: b.Setup.Authority, CA: ca, Server: b.URL, Identities: b.ControlPlane.Identities,
		Rotated: func() {
			if err := b.RenewControlPlane(); err != nil {
				t.Error(err)
			}
		},
		Push: func(ctx context.Context) error { return b.Setup.Authority.PushAccount(ctx, sys) },
		Record: func(_ context.Context, actor, action, subject, _ string) error {
			records = append(records, actor+" "+action+" "+subject)
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, b.ControlPlane.NC) }()
	t.Cleanup(func() { cancel(); <-done })
	// Served once a request gets an answer.
	admin := b.Config(t, natsauth.RoleAdmin, "alice")
	testwait.For(t, 5*time.Second, "the service answers", func() error {
		_, err := createToken(t, b, admin, time.Minute)
		return err
	})
	return b, &records
}

func createToken(t *testing.T, b *natsauthtest.Bus, cfg *natsauth.ClientConfig, ttl time.Duration) (natsauth.JoinToken, error) {
	t.Helper()
	nc := connect(t, b, cfg)
	creds, _ := natsauth.ParseCreds([]byte(cfg.Creds))
	var out natsauth.TokenReply
	if err := natsauth.Call(context.Background(), nc, creds, natsauth.AdminSubject(natsauth.VerbTokenCreate), natsauth.TokenRequest{TTL: ttl}, &out); err != nil {
		return natsauth.JoinToken{}, err
	}
	return natsauth.ParseJoinToken(out.Token)
}

func connect(t *testing.T, b *natsauthtest.Bus, cfg *natsauth.ClientConfig) *nats.Conn {
	t.Helper()
	opts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestJoinAndRevoke: a token is exchanged once for a node's credentials;
// used again, expired or forged it is refused; a revoked node is
// disconnected and refused; everything is recorded.
func TestJoinAndRevoke(t *testing.T) {
	t.Parallel()
	b, records := service(t)
	ctx := context.Background()
	admin := b.Config(t, natsauth.RoleAdmin, "alice")
	tok, err := createToken(t, b, admin, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	creds, ca, err := natsauth.Join(ctx, b.URL, tok, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := natsauth.Join(ctx, b.URL, tok, "n2"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("a reused token: %v, want already used", err)
	}
	opts, err := natsauth.ClientOptions(ca, creds)
	if err != nil {
		t.Fatal(err)
	}
	node, err := natsbus.Connect(ctx, b.URL, natsbus.Options{Bind: true, EventWriter: "n1", NATSOptions: append(opts, nats.MaxReconnects(0))})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if _, err := node.Status.Put(ctx, "n1.default.p", []byte(`{}`)); err != nil {
		t.Errorf("the joined node writes its status: %v", err)
	}

	short, err := createToken(t, b, admin, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "the short token expired", func() error {
		if time.Now().Before(short.Expires()) {
			return errors.New("not yet")
		}
		return nil
	})
	if _, _, err := natsauth.Join(ctx, b.URL, short, "n3"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired token: %v, want expired", err)
	}

	// A token from another bus's authority: the CA pin fails first.
	other, err := natsauth.Prepare(t.TempDir(), natsauth.ServerHosts("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	boot, _ := other.Authority.NewCreds("forged", natsauth.RoleJoin, time.Minute)
	forged := tok
	forged.JWT, forged.Seed = boot.JWT, string(boot.Seed)
	if _, _, err := natsauth.Join(ctx, b.URL, forged, "n4"); err == nil || !strings.Contains(err.Error(), "refused the join token") {
		t.Errorf("a forged token: %v, want refused", err)
	}

	// A viewer may not ask for tokens: the server refuses the request.
	if _, err := createToken(t, b, b.Config(t, natsauth.RoleViewer, "vic"), time.Minute); err == nil {
		t.Error("a viewer created a join token")
	}

	nc := connect(t, b, admin)
	adminCreds, _ := natsauth.ParseCreds([]byte(admin.Creds))
	var rep natsauth.RevokeReply
	if err := natsauth.Call(ctx, nc, adminCreds, natsauth.AdminSubject(natsauth.VerbNodeRevoke), natsauth.RevokeRequest{Name: "n1"}, &rep); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the revoked node disconnected", func() error {
		if node.NC.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	if _, err := nats.Connect(b.URL, opts...); !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked) {
		t.Errorf("the revoked node connects again: %v", err)
	}
	want := []string{"admin:alice token-created", "node:n1 node-join node/n1", "admin:alice node-revoked node/n1"}
	got := strings.Join(*records, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("records lack %q:\n%s", w, got)
		}
	}
}

// TestRotateServerCert: a new server certificate from the same CA is
// used for new connections at once; established ones carry on.
func TestRotateServerCert(t *testing.T) {
	t.Parallel()
	b := natsauthtest.Start(t)
	cfg := b.Config(t, natsauth.RoleViewer, "vic")
	old := connect(t, b, cfg)
	serial := func(nc *nats.Conn) string {
		cs, err := nc.TLSConnectionState()
		if err != nil {
			t.Fatal(err)
		}
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	before := serial(old)
	if err := b.Setup.PKI.IssueServerCert(natsauth.ServerHosts("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	cfgTLS, err := b.Setup.PKI.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Server.ReloadTLS(cfgTLS); err != nil {
		t.Fatal(err)
	}
	if after := serial(connect(t, b, cfg)); after == before {
		t.Errorf("a new connection still gets the old certificate (serial %s)", before)
	}
	if err := old.Flush(); err != nil || !old.IsConnected() {
		t.Errorf("the established connection: %v, connected %v", err, old.IsConnected())
	}
}

// TestRotateSigningKey: after a rotation, a node renews onto the new key;
// retiring the old one is refused while a person's credentials still use
// it, and forced, refuses those; the renewed node carries on.
func TestRotateSigningKey(t *testing.T) {
	t.Parallel()
	b, records := service(t)
	ctx := context.Background()
	admin := b.Config(t, natsauth.RoleAdmin, "alice")
	adminNC := connect(t, b, admin)
	adminCreds, _ := natsauth.ParseCreds([]byte(admin.Creds))
	call := func(verb string, req, out any) error {
		return natsauth.Call(ctx, adminNC, adminCreds, natsauth.AdminSubject(verb), req, out)
	}
	tok, err := createToken(t, b, admin, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	creds, ca, err := natsauth.Join(ctx, b.URL, tok, "n1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "node.creds")
	writeCreds(t, path, creds)
	opts, err := natsauth.ClientOptionsFunc(ca, natsauth.CredsFile(path))
	if err != nil {
		t.Fatal(err)
	}
	node, err := natsbus.Connect(ctx, b.URL, natsbus.Options{Bind: true, EventWriter: "n1", NATSOptions: append(opts, nats.ReconnectWait(50*time.Millisecond))})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()

	// A viewer issued through the service, on the old key.
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	var issued natsauth.Issued
	if err := call(natsauth.VerbCredentialsCreate, natsauth.CredentialsRequest{Name: "vic", Role: natsauth.RoleViewer, Key: pub}, &issued); err != nil {
		t.Fatal(err)
	}
	vicOpts, _ := natsauth.ClientOptions(ca, natsauth.Creds{JWT: issued.JWT, Seed: seed})
	vic, err := nats.Connect(b.URL, append(vicOpts, nats.MaxReconnects(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer vic.Close()

	old := b.Setup.Authority.SigningKeys()[0]
	var rep natsauth.RotateReply
	if err := call(natsauth.VerbRotateSigningKey, struct{}{}, &rep); err != nil {
		t.Fatal(err)
	}
	if cur := b.Setup.Authority.SigningKeys()[0]; cur == old {
		t.Fatal("the signing key did not change")
	}
	renewed, err := natsauth.Renew(ctx, node.NC, creds)
	if err != nil {
		t.Fatal(err)
	}
	if uc, _ := renewed.Claims(); uc.Issuer == old {
		t.Fatal("renewed with the old key")
	}
	writeCreds(t, path, renewed)
	// The admin retiring the old key must not be on it: a new admin.
	admin = b.Config(t, natsauth.RoleAdmin, "alice")
	adminNC = connect(t, b, admin)
	adminCreds, _ = natsauth.ParseCreds([]byte(admin.Creds))

	err = call(natsauth.VerbRetireSigningKeys, natsauth.RetireRequest{}, &rep)
	if err == nil || !strings.Contains(err.Error(), "user/vic") || strings.Contains(err.Error(), "node/n1") {
		t.Fatalf("retire while vic is on the old key: %v, want refused naming user/vic only", err)
	}
	if err := call(natsauth.VerbRetireSigningKeys, natsauth.RetireRequest{Force: true}, &rep); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the old key's viewer disconnected", func() error {
		if vic.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	testwait.For(t, 10*time.Second, "the renewed node writes", func() error {
		_, err := node.Status.Put(ctx, "n1.default.p", []byte(`{}`))
		return err
	})
	if got := strings.Join(*records, "\n"); !strings.Contains(got, "signing-key-rotated") || !strings.Contains(got, "signing-keys-retired") {
		t.Errorf("records lack the rotation:\n%s", got)
	}
}

func writeCreds(t *testing.T, path string, c natsauth.Creds) {
	t.Helper()
	b, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedClients: credentials of another bus, and a certificate from
// another CA, are refused with one line in the user's words.
func TestRefusedClients(t *testing.T) {
	t.Parallel()
	a, b := natsauthtest.Start(t), natsauthtest.Start(t)
	cases := []struct {
		name string
		cfg  *natsauth.ClientConfig
		want string
	}{
		{"another bus's CA", a.Config(t, natsauth.RoleViewer, "vic"), "certificate from another CA"},
		{"forged credentials", func() *natsauth.ClientConfig {
			c := a.Config(t, natsauth.RoleAdmin, "mallory")
			ca, _ := b.Setup.PKI.CAPEM()
			c.CA = string(ca) // trusts b's certificate, but a's authority signed it
			return c
		}(), "refused these credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts, err := c.cfg.Options()
			if err != nil {
				t.Fatal(err)
			}
			_, err = nats.Connect(b.URL, append(opts, nats.MaxReconnects(0))...)
			if err == nil {
				t.Fatal("connected")
			}
			msg := natsauth.Explain(err, b.URL).Error()
			if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("told %q, want one line with %q", msg, c.want)
			}
		})
	}
}
