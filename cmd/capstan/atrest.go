//go:build !nodeonly

package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/atrest"
)

// secretsAtRest returns the control plane's view of the bus: conn with the
// objects bucket wrapped so that Secret values are encrypted at rest with
// <data-dir>/secrets.key (bus/secrets/atrest, created at first start), and the
// function serving reveal and rotate requests, which first re-encrypts
// what is not under the current key (Secrets an older Capstan wrote in
// plain text, a rotation cut short). The node (up's own too) keeps conn:
// it never reads Secrets from the objects bucket, nor holds the key.
func (f *stackFlags) secretsAtRest(conn *natsbus.Conn, log *slog.Logger) (*natsbus.Conn, func(context.Context) error, error) {
	path := filepath.Join(f.dataDir, atrest.KeyFileName)
	keys, err := atrest.LoadKeyFile(path)
	if err != nil {
		return nil, nil, err
	}
	log = log.With("component", "secrets")
	log.Info("Secret values encrypted at rest", "key_file", path, "key", keys.Current())
	store := atrest.New(conn.Objects, keys, log)
	cp := *conn // a copy of the fields: Close stays conn's
	cp.Objects = store
	serve := func(ctx context.Context) error {
		stop, err := store.Subscribe(ctx, conn.NC)
		if err != nil {
			return err
		}
		res, err := store.Converge(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("re-encrypt Secrets under the current key", "err", err)
		case res.Reencrypted > 0 || len(res.Dropped) > 0 || len(res.Unreadable) > 0:
			log.Info("Secrets re-encrypted under the current key", "key", res.Key, "reencrypted", res.Reencrypted,
				"dropped", res.Dropped, "unreadable", res.Unreadable)
		}
		<-ctx.Done()
		return stop()
	}
	return &cp, serve, nil
}
