//go:build !nodeonly

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	gogit "github.com/go-git/go-git/v5"
	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/reconciler/writeback"
	"github.com/capstan-io/capstan/sources/git"
)

// The control plane writes the commits of `capstan scale` and `capstan
// rollout undo` to a remote source's repository, with the credentials the
// source fetches with (reconciler/writeback); here are its flag and its
// wiring.

// gitSigningFlag adds the control plane's --git-signing-key.
func (f *stackFlags) gitSigningFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.gitSigningKey, "git-signing-key", "", "private key signing the commits the control plane writes for `capstan scale` and `rollout undo`: armored OpenPGP or SSH, without passphrase (needed for sources that verify signatures)")
}

// loadSigningKey reads --git-signing-key, failing before anything starts.
func (f *stackFlags) loadSigningKey() error {
	if f.gitSigningKey == "" {
		return nil
	}
	s, _, err := git.LoadSigner(f.gitSigningKey)
	if err != nil {
		return fmt.Errorf("--git-signing-key: %w", err)
	}
	f.signer = s
	return nil
}

// commitSigner signs commits (go-git's Signer); nil signs none.
type commitSigner = gogit.Signer

// runGitWriter starts the control plane's commit writer for the sources
// the manager runs.
func (f *stackFlags) runGitWriter(g *group, conn *natsbus.Conn, m *gitops.SourceManager, log *slog.Logger) {
	w := &writeback.Server{Objects: conn.Objects, Audit: conn.Audit, Sources: m, Signer: f.signer, Log: log.With("component", "git-write")}
	if f.trust != nil {
		w.Verify = f.trust.setup.Authority.VerifyRequest
	}
	g.Go("git writes", func(ctx context.Context) error { return w.Serve(ctx, conn.NC) })
}

// writeBackError is a write-back's refusal as the CLI ends with it:
// "error: ..." on stderr, exit code 1.
func writeBackError(err error) error {
	var ue writeback.UserError
	if errors.As(err, &ue) {
		return exitError{code: 1, msg: "error: " + ue.Msg}
	}
	return err
}
