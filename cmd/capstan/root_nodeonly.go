//go:build nodeonly

package main

import "github.com/spf13/cobra"

const (
	rootUse   = "capstan-node"
	rootShort = "Capstan's node daemon alone, for hosts that run pods (the control plane and the CLI are in capstan)"
)

// commands are the nodeonly build's (bin/capstan-node, docs/ARCHITECTURE.md):
// the node daemon alone, real or simulated. Cobra adds help and completion.
func commands(g *globals) []*cobra.Command {
	return []*cobra.Command{nodeCmd(g)}
}
