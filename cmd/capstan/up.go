//go:build !nodeonly && !serveronly

package main

import "github.com/spf13/cobra"

func upCmd(gl *globals) *cobra.Command {
	f := &stackFlags{gl: gl}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run everything in one process: bus, control plane, this node, and the git source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := gl.logger()
			src, err := f.source(log.With("component", "source"))
			if err != nil {
				return err
			}
			f.setGCPercent(cmd, log)
			return f.run(cmd.Context(), log, src, true)
		},
	}
	f.busFlags(cmd)
	f.sourceFlags(cmd)
	f.nodeFlags(cmd)
	return cmd
}
