//go:build !nodeonly

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/reconciler/gitops"
)

// busTrust is the control plane's side of the bus's security: the trust
// material in the data dir, and a system-account connection that applies
// account changes (revocations) to the servers.
type busTrust struct {
	setup *natsauth.Setup
	ca    []byte
	url   string // the URL client configs name
	sys   *nats.Conn
	srv   *natsbus.Server // the embedded server; nil on an external cluster
	hosts []string        // what the server certificate names
	// cp is the control plane's own identity, issued again after a
	// signing-key rotation; the connection reads it at every reconnect.
	cp atomic.Pointer[natsauth.Creds]
}

// issueOwn issues the control plane's credentials with the current
// signing key.
func (t *busTrust) issueOwn() error {
	c, err := t.setup.Authority.NewCreds("control-plane", natsauth.RoleControlPlane, 0)
	if err != nil {
		return err
	}
	t.cp.Store(&c)
	return nil
}

// rotateServerCert issues a new server certificate from the same CA (so
// clients keep trusting it) and has the embedded server use it for new
// connections; established ones, and every pod, carry on.
func (t *busTrust) rotateServerCert(context.Context) (string, error) {
	if err := t.setup.PKI.IssueServerCert(t.hosts); err != nil {
		return "", err
	}
	if t.srv == nil {
		return "issued a new server certificate in " + t.setup.PKI.Dir + ": reload the cluster's servers (nats-server --signal reload)", nil
	}
	cfg, err := t.setup.PKI.ServerTLS()
	if err != nil {
		return "", err
	}
	if err := t.srv.ReloadTLS(cfg); err != nil {
		return "", err
	}
	return "issued a new server certificate; the bus uses it for new connections", nil
}

// push applies the account JWT as it stands to the servers.
func (t *busTrust) push(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.setup.Authority.PushAccount(ctx, t.sys)
}

// startBus prepares the trust material, starts the embedded server
// (unless --nats-url) with it, and connects as the control plane.
func (f *stackFlags) startBus(ctx context.Context, log *slog.Logger) (*natsbus.Conn, *busTrust, func(), error) {
	host, port, err := splitHostPort(f.listen)
	if err != nil {
		return nil, nil, nil, err
	}
	var setup *natsauth.Setup
	hosts := natsauth.ServerHosts(host, f.tlsSANs...)
	if !f.gl.insecure {
		if setup, err = natsauth.Prepare(f.dataDir, hosts); err != nil {
			return nil, nil, nil, fmt.Errorf("bus security: %w", err)
		}
	} else {
		log.Warn("the bus runs without TLS or authentication (--insecure-bus): any local process can change what runs")
	}
	url := f.natsURL
	var srv *natsbus.Server
	if url == "" {
		// The server's warnings and errors (a client refused, say) reach
		// the log; its notices would drown it.
		opts := natsbus.ServerOptions{DataDir: filepath.Join(f.dataDir, "bus"), Host: host, Port: port, SyncAlways: f.syncAlways,
			Logger: slog.New(atLeast{log.Handler(), slog.LevelWarn})}
		if setup != nil {
			opts.ConfigFile = setup.ConfigFile
			if err := adoptGlobalAccount(opts.DataDir, setup.Authority.AccountKey(), log); err != nil {
				return nil, nil, nil, err
			}
		}
		if srv, err = natsbus.NewServer(opts); err != nil {
			return nil, nil, nil, err
		}
		if err := srv.Start(ctx); err != nil {
			return nil, nil, nil, err
		}
		url = srv.ClientURL()
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			url = "nats://127.0.0.1:" + strconv.Itoa(port)
		}
		log.Info("embedded NATS server ready", "url", url, "store", opts.DataDir, "tls", setup != nil)
	}
	var nopts []nats.Option
	var trust *busTrust
	if setup != nil {
		ca, err := setup.PKI.CAPEM()
		if err != nil {
			return nil, nil, nil, err
		}
		trust = &busTrust{setup: setup, ca: ca, url: url, srv: srv, hosts: hosts}
		if err := trust.issueOwn(); err != nil {
			return nil, nil, nil, err
		}
		if nopts, err = natsauth.ClientOptionsFunc(ca, func() (natsauth.Creds, error) { return *trust.cp.Load(), nil }); err != nil {
			return nil, nil, nil, err
		}
	}
	stop := func() {
		if trust != nil && trust.sys != nil {
			trust.sys.Close()
		}
		if srv != nil {
			srv.Shutdown()
		}
	}
	conn, err := natsbus.Connect(ctx, url, natsbus.Options{Logger: log, NATSOptions: nopts})
	if err != nil {
		stop()
		return nil, nil, nil, natsauth.Explain(err, redactURL(url))
	}
	if trust != nil {
		sys, err := trust.setup.Authority.SystemUser()
		if err == nil {
			var sopts []nats.Option
			if sopts, err = natsauth.ClientOptions(trust.ca, sys); err == nil {
				trust.sys, err = nats.Connect(url, append(sopts, nats.Name("capstan-control-plane-system"), nats.MaxReconnects(-1))...)
			}
		}
		if err == nil {
			// An external cluster learns of revocations and new signing keys
			// made while the control plane was down.
			err = trust.push(ctx)
		}
		if err != nil {
			conn.Close()
			stop()
			return nil, nil, nil, fmt.Errorf("bus security: the system account: %w", natsauth.Explain(err, redactURL(url)))
		}
	}
	if dropped, err := conn.DropLegacy(ctx); err != nil {
		log.Warn("the buckets of an older Capstan stay", "err", err)
	} else if len(dropped) > 0 {
		log.Info("deleted the buckets of an older Capstan that nothing reads", "buckets", dropped)
	}
	return conn, trust, func() {
		conn.Close()
		stop()
	}, nil
}

// atLeast passes on the records of its level and above.
type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(as), h.min}
}
func (h atLeast) WithGroup(n string) slog.Handler { return atLeast{h.Handler.WithGroup(n), h.min} }

// adoptGlobalAccount moves the JetStream data an unauthenticated bus kept
// in the global account ($G) to Capstan's account, the first time the bus
// starts with identities, so the audit history carries over.
func adoptGlobalAccount(storeDir, account string, log *slog.Logger) error {
	old, dst := filepath.Join(storeDir, "jetstream", "$G"), filepath.Join(storeDir, "jetstream", account)
	if _, err := os.Stat(old); err != nil {
		return nil
	}
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Rename(old, dst); err != nil {
		return fmt.Errorf("move the bus's data into Capstan's account: %w", err)
	}
	log.Info("the bus now requires identities; its data moved into Capstan's account", "account", account)
	return nil
}

// runTrust serves joins and the admin requests, and writes the admin
// client config of the user who started the control plane.
func (f *stackFlags) runTrust(g *group, conn *natsbus.Conn, t *busTrust, log *slog.Logger) error {
	if t == nil {
		return nil
	}
	svc := &natsauth.Service{Authority: t.setup.Authority, CA: t.ca, Server: t.url, Identities: conn.Identities,
		Push: t.push, Record: recordAction(conn), RotateServerCert: t.rotateServerCert, Log: log.With("component", "identities"),
		Rotated: func() {
			// Reconnected at once on the new key, so retiring the old one
			// later does not cut the control plane off.
			if err := t.issueOwn(); err != nil {
				log.Error("issue the control plane's credentials with the new signing key", "err", err)
			} else if err := conn.NC.ForceReconnect(); err != nil {
				log.Warn("reconnect with the new signing key", "err", err)
			}
		}}
	if err := f.writeAdminConfig(g.ctx, t, svc, log); err != nil {
		return err
	}
	g.Go("identities", func(ctx context.Context) error { return svc.Run(ctx, conn.NC) })
	return nil
}

// writeAdminConfig writes the admin client config (0600) for the user who
// started the control plane, where the CLI looks for it; a config that is
// still valid for this bus is kept.
func (f *stackFlags) writeAdminConfig(ctx context.Context, t *busTrust, svc *natsauth.Service, log *slog.Logger) error {
	path := f.gl.configPath()
	if cfg, err := natsauth.LoadClientConfig(path); err == nil {
		if creds, err := natsauth.ParseCreds([]byte(cfg.Creds)); err == nil {
			uc, err := t.setup.Authority.Verify(creds.JWT)
			if err == nil && cfg.CA == string(t.ca) && uc.Issuer == t.setup.Authority.SigningKeys()[0] {
				if cfg.Server != t.url {
					cfg.Server = t.url
					if err := cfg.Save(path); err != nil {
						return fmt.Errorf("write the client config: %w", err)
					}
				}
				log.Info("client config ready", "path", path, "identity", cfg.Role+":"+cfg.Name)
				return nil
			}
		}
	}
	name := adminName()
	cfg, err := t.setup.ClientConfig(t.url, name, natsauth.RoleAdmin)
	if err != nil {
		return err
	}
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("write the client config: %w", err)
	}
	creds, _ := natsauth.ParseCreds([]byte(cfg.Creds))
	key, _ := creds.PublicKey()
	if err := svc.Register(ctx, natsauth.Record{Kind: "user", Name: name, Role: natsauth.RoleAdmin, Key: key, IssuedBy: "control-plane"}, creds.JWT); err != nil {
		log.Warn("record the admin's credentials", "err", err)
	}
	log.Info("wrote an admin client config", "path", path, "identity", "admin:"+name)
	return nil
}

var notNameChar = regexp.MustCompile(`[^a-z0-9.-]+`)

// adminName names the admin identity after the user who started the
// control plane (the one behind sudo, if any).
func adminName() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	name = strings.Trim(notNameChar.ReplaceAllString(strings.ToLower(name), "-"), "-.")
	if natsauth.CheckName(name) != nil {
		return "admin"
	}
	return name
}

// recordAction records the identity service's actions in the history.
func recordAction(conn *natsbus.Conn) func(ctx context.Context, actor, action, subject, detail string) error {
	return func(ctx context.Context, actor, action, subject, detail string) error {
		rec := gitops.ActionRecord{Action: action, Actor: actor, Subject: subject, Message: detail}
		if action == natsauth.ActionTokenCreated {
			rec.Result = gitops.ResultIssued
		}
		return gitops.RecordAction(ctx, conn.Audit, rec)
	}
}
