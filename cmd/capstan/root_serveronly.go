//go:build serveronly

package main

import "github.com/spf13/cobra"

const (
	rootUse   = "capstan-server"
	rootShort = "Capstan's control plane and CLI, without the node daemon (no Podman bindings)"
)

// commands are the serveronly build's (bin/capstan-server,
// docs/ARCHITECTURE.md): the control plane and the client commands; up
// and node, which run pods, are in capstan and capstan-node.
func commands(g *globals) []*cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Nodes' identities (the node daemon is capstan-node)"}
	node.AddCommand(nodeRevokeCmd(g))
	return []*cobra.Command{serverCmd(g), node,
		tokenCmd(g), credentialsCmd(g), authCmd(g),
		getCmd(g), describeCmd(g), logsCmd(g), historyCmd(g), validateCmd(g),
		execCmd(g),
		diffCmd(g),
		rolloutCmd(g),
		secretCmd(g), scaleCmd(g)}
}
