package main

import (
	"os"
	"strings"

	"github.com/capstan-io/capstan/bus/natsauth"
)

// defaultServer is the bus URL when neither --server, CAPSTAN_SERVER nor
// the client config names one.
const defaultServer = "nats://127.0.0.1:4222"

// Files of a node's identity in its data dir.
const (
	nodeCredsFile = "node.creds"
	nodeCAFile    = "ca.crt"
)

// configPath is the client config: --config, else CAPSTAN_CONFIG, else
// the default under the user's config directory.
func (g *globals) configPath() string {
	if g.config != "" {
		return g.config
	}
	if p := os.Getenv("CAPSTAN_CONFIG"); p != "" {
		return p
	}
	return natsauth.DefaultConfigPath()
}

// serverURL is --server (or CAPSTAN_SERVER), else the config's, else the
// default.
func (g *globals) serverURL(cfg *natsauth.ClientConfig) string {
	switch {
	case g.server != "":
		return g.server
	case cfg != nil && cfg.Server != "":
		return cfg.Server
	}
	return defaultServer
}

// redactURL drops userinfo from a URL for messages.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.LastIndex(u[i+3:], "@"); j >= 0 {
			return u[:i+3] + "***@" + u[i+3+j+1:]
		}
	}
	return u
}
