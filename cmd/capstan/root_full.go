//go:build !nodeonly && !serveronly

package main

import "github.com/spf13/cobra"

const (
	rootUse   = "capstan"
	rootShort = "Capstan keeps Podman hosts running what a Git repository declares"
)

// commands are the full binary's: the all-in-one, the control plane, the
// node daemon and the client commands.
func commands(g *globals) []*cobra.Command {
	node := nodeCmd(g)
	node.AddCommand(nodeRevokeCmd(g))
	return []*cobra.Command{upCmd(g), serverCmd(g), node,
		tokenCmd(g), credentialsCmd(g), authCmd(g),
		getCmd(g), describeCmd(g), logsCmd(g), historyCmd(g), validateCmd(g),
		execCmd(g),
		diffCmd(g),
		rolloutCmd(g),
		secretCmd(g), scaleCmd(g)}
}
