//go:build !nodeonly

package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/webhook"
)

// webhookFlags are the push-to-deploy receiver's flags of up and server.
func (f *stackFlags) webhookFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.webhookListen, "webhook-listen", "", "serve push webhooks (GitHub, GitLab, Gitea/Forgejo, generic) on this address, e.g. 127.0.0.1:9292; off when empty")
	cmd.Flags().StringVar(&f.webhookSecretFile, "webhook-secret-file", "", "file holding the webhooks' shared secret (HMAC key or token); required with --webhook-listen")
}

// triggerer is a source that can be told to fetch now.
type triggerer interface{ Trigger() }

// webhook returns the receiver the flags ask for, or nil when they ask for
// none. It fails before anything starts on a missing or empty secret.
func (f *stackFlags) webhook(src sources.Source, log *slog.Logger) (*webhook.Receiver, error) {
	if f.webhookListen == "" {
		if f.webhookSecretFile != "" {
			return nil, errors.New("--webhook-secret-file needs --webhook-listen")
		}
		return nil, nil
	}
	if f.webhookSecretFile == "" {
		return nil, errors.New("--webhook-listen needs --webhook-secret-file")
	}
	t, ok := src.(triggerer)
	if src == nil || !ok {
		return nil, errors.New("--webhook-listen needs a source to trigger: give --repo or --dir")
	}
	secret, err := webhook.ReadSecretFile(f.webhookSecretFile)
	if err != nil {
		return nil, err
	}
	// The root until the source manager runs; then it keeps the targets
	// current as declared Sources come and go (webhookTargets).
	r, err := webhook.New(webhook.Options{
		Addr:    f.webhookListen,
		Secret:  secret,
		Targets: []webhook.Target{webhook.TargetFor(f.sourceName, src.Spec(), t.Trigger)},
		Logger:  log.With("component", "webhook"),
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	f.hook = r
	return r, nil
}

// webhookTargets is the source manager's Triggers: nil without a webhook
// receiver.
func (f *stackFlags) webhookTargets() func([]webhook.Target) {
	if f.hook == nil {
		return nil
	}
	return f.hook.SetTargets
}
