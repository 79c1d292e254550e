//go:build !nodeonly

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsauth"
)

// adminCall sends a signed admin request to the control plane.
func (g *globals) adminCall(ctx context.Context, verb string, req, reply any) error {
	creds, err := g.creds()
	if err != nil {
		return err
	}
	conn, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return natsauth.Call(ctx, conn.NC, creds, natsauth.AdminSubject(verb), req, reply)
}

func tokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Join tokens: how a new node gets its own identity on the bus"}
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a one-time join token (only the token, on one line) for capstan node --token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out natsauth.TokenReply
			if err := g.adminCall(cmd.Context(), natsauth.VerbTokenCreate, natsauth.TokenRequest{TTL: ttl}, &out); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, out.Token)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", natsauth.DefaultTokenTTL, "how long the token can be used")
	cmd.AddCommand(create)
	return cmd
}

func credentialsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "credentials", Short: "People's identities on the bus: viewer, operator or admin"}
	var role, output string
	create := &cobra.Command{
		Use:   "create --role viewer|operator|admin NAME",
		Short: "Write a client config (bus URL, CA, credentials) for someone else",
		Long: `Write a client config for NAME with a role: a viewer reads everything but
Secret values; an operator also reads logs, runs exec and asks for the Git
write-back of scale and rollout undo; an admin may do everything, issuing
credentials too. The key pair is made here; only its public half goes to
the control plane. Give the file to its holder, who points CAPSTAN_CONFIG
at it (or --config).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := natsauth.CheckName(name); err != nil {
				return err
			}
			kp, err := nkeys.CreateUser()
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			var out natsauth.Issued
			if err := g.adminCall(cmd.Context(), natsauth.VerbCredentialsCreate, natsauth.CredentialsRequest{Name: name, Role: role, Key: pub}, &out); err != nil {
				return err
			}
			file, err := natsauth.Creds{JWT: out.JWT, Seed: seed}.File()
			if err != nil {
				return err
			}
			server := out.Server
			if g.server != "" {
				server = g.server
			}
			if output == "" {
				output = name + ".capstan-config"
			}
			cfg := &natsauth.ClientConfig{Server: server, Name: name, Role: role, CA: out.CA, Creds: string(file)}
			if err := cfg.Save(output); err != nil {
				return err
			}
			abs, _ := filepath.Abs(output)
			fmt.Fprintf(g.stdout, "wrote the %s config of %s to %s (CAPSTAN_CONFIG=%s)\n", role, name, output, abs)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", natsauth.RoleViewer, "viewer, operator or admin")
	create.Flags().StringVarP(&output, "output", "o", "", "file to write (default NAME.capstan-config), 0600")
	revoke := adminCmd(g, "revoke NAME", "Revoke someone's credentials: their connections are closed and refused at once", 1,
		natsauth.VerbCredentialsRevoke, func(args []string) any { return natsauth.RevokeRequest{Name: args[0]} },
		func(r natsauth.RevokeReply) string { return "revoked " + r.Revoked })
	renew := &cobra.Command{
		Use:   "renew",
		Short: "Have your credentials signed again with the bus's current signing key (after capstan auth rotate-signing-key); rewrites your client config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := g.configPath()
			cfg, err := natsauth.LoadClientConfig(path)
			if err != nil {
				return err
			}
			creds, err := natsauth.ParseCreds([]byte(cfg.Creds))
			if err != nil {
				return err
			}
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			renewed, err := natsauth.Renew(cmd.Context(), conn.NC, creds)
			if err != nil {
				return err
			}
			file, err := renewed.File()
			if err != nil {
				return err
			}
			cfg.Creds = string(file)
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "renewed the credentials in %s\n", path)
			return nil
		},
	}
	cmd.AddCommand(create, revoke, renew)
	return cmd
}

// nodeRevokeCmd is `capstan node revoke NAME`.
func nodeRevokeCmd(g *globals) *cobra.Command {
	return adminCmd(g, "revoke NAME", "Revoke a node's credentials: its connection is closed and refused at once (its pods keep running until the node-loss rules replace them)", 1,
		natsauth.VerbNodeRevoke, func(args []string) any { return natsauth.RevokeRequest{Name: args[0]} },
		func(r natsauth.RevokeReply) string { return "revoked " + r.Revoked })
}

// adminCmd is a command that sends one admin request, made from its
// arguments, and prints what the reply says.
func adminCmd[R any](g *globals, use, short string, nargs int, verb string, req func(args []string) any, say func(R) string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out R
			if err := g.adminCall(cmd.Context(), verb, req(args), &out); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, say(out))
			return nil
		},
	}
}

func authCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "The bus's trust material: for an external NATS cluster and rotations"}
	var dataDir, listen string
	var sans []string
	serverConfig := &cobra.Command{
		Use:   "server-config",
		Short: "Print the nats-server configuration that trusts this Capstan's identities (include it in an external cluster's servers)",
		Long: `Print the part of a nats-server configuration that makes a server trust
this Capstan's operator, accounts and identities, with TLS from its CA: the
same configuration the embedded server runs. It creates the trust material
in --data-dir at first use. Include the output in each server's
configuration (beside jetstream and cluster blocks), copy the files it
names, and start capstan server --nats-url with the same --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, _, err := splitHostPort(listen)
			if err != nil {
				return err
			}
			setup, err := natsauth.Prepare(dataDir, natsauth.ServerHosts(host, sans...))
			if err != nil {
				return err
			}
			b, err := os.ReadFile(setup.ConfigFile)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	serverConfig.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the control plane's data dir, holding the trust material")
	serverConfig.Flags().StringVar(&listen, "listen", "127.0.0.1:4222", "address the servers are reached at (named in their certificate)")
	serverConfig.Flags().StringSliceVar(&sans, "tls-san", nil, "extra host names or addresses for the server certificate")
	done := func(r natsauth.RotateReply) string { return r.Done }
	none := func([]string) any { return struct{}{} }
	rotate := adminCmd(g, "rotate-server-cert", "Issue a new server certificate from the bus CA; the embedded server uses it at once (no client or pod restarts)", 0,
		natsauth.VerbRotateServerCert, none, done)
	rotateKey := adminCmd(g, "rotate-signing-key", "Make a new account signing key current; identities signed by the old one keep working until retire-signing-keys", 0,
		natsauth.VerbRotateSigningKey, none, done)
	var force bool
	retire := adminCmd(g, "retire-signing-keys", "Stop trusting every signing key but the current one (refused while identities still use them, unless --force)", 0,
		natsauth.VerbRetireSigningKeys, func([]string) any { return natsauth.RetireRequest{Force: force} }, done)
	retire.Flags().BoolVar(&force, "force", false, "retire them although identities still use them: those are refused from now on")
	cmd.AddCommand(serverConfig, rotate, rotateKey, retire)
	return cmd
}
