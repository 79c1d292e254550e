package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	server   string
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
}

// Run runs the capstan command line with args; it never exits the process.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "capstan",
		Short:         "Capstan keeps Podman hosts running what a Git repository declares",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	def := os.Getenv("CAPSTAN_SERVER")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	root.PersistentFlags().StringVar(&g.server, "server", def, "NATS URL of the Capstan bus (env CAPSTAN_SERVER)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(upCmd(g), serverCmd(g), nodeCmd(g),
		getCmd(g), describeCmd(g), logsCmd(g), historyCmd(g), validateCmd(g),
		execCmd(g),
		diffCmd(g),
		rolloutCmd(g),
		secretCmd(g), scaleCmd(g))
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
