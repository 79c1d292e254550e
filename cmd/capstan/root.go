package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsauth"
)

// globals are the flags every command shares.
type globals struct {
	server   string
	config   string
	insecure bool
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
}

// Run runs the capstan command line with args; it never exits the process.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           rootUse,
		Short:         rootShort,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("CAPSTAN_SERVER"), "NATS URLs of the Capstan bus, comma-separated (env CAPSTAN_SERVER; default: the client config's, else "+defaultServer+")")
	root.PersistentFlags().StringVar(&g.config, "config", "", "client config: bus URL, CA and credentials (env CAPSTAN_CONFIG; default "+natsauth.DefaultConfigPath()+"); capstan up and server write it")
	root.PersistentFlags().BoolVar(&g.insecure, "insecure-bus", false, "run or reach the bus without TLS or authentication: for benchmarks and labs only")
	_ = root.PersistentFlags().MarkHidden("insecure-bus")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(commands(g)...) // root_full.go, or root_nodeonly.go in the nodeonly build
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(g.logLevel) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
}
