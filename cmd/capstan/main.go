// Command capstan is Capstan's one binary: the all-in-one `up`, the control
// plane `server`, the node daemon `node`, and the client commands (get,
// describe, logs, history, validate).
//
// Built with the nodeonly tag (bin/capstan-node), the same package holds the
// node daemon alone: root_nodeonly.go and stack_nodeonly.go replace the
// control plane's commands and flags, and the files behind !nodeonly drop
// out, so neither the reconciler, the sources, CUE, go-git nor SOPS are
// linked in (docs/ARCHITECTURE.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintln(os.Stderr, ex.msg)
			}
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a code, after printing msg if any.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }
