//go:build !nodeonly

package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
)

// execCmd is `capstan exec POD [-c C] -- CMD...`: it runs a command in a
// pod's container on the node that runs it, streams its output, and exits
// with the command's exit code. It is not interactive.
func execCmd(g *globals) *cobra.Command {
	var ns, container string
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] -- COMMAND [ARG...]",
		Short: "Run a command in a pod's container, on the node that runs it",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return fmt.Errorf("usage: capstan exec POD [-c CONTAINER] -- COMMAND [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			pod, err := boundPod(cmd.Context(), conn, ns, args[0])
			if err != nil {
				return err
			}
			code, err := node.RemoteExec(cmd.Context(), conn.NC, pod.Spec.NodeName, node.ExecRequest{
				Namespace: pod.Namespace, Pod: pod.Name, Container: container, Command: args[1:],
			}, g.stdout, g.stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().StringVarP(&container, "container", "c", "", "container name (needed when the pod has several)")
	return cmd
}

// boundPod finds the pod named by arg ("web-1", "pod/web-1") and checks it
// is on a node, for the commands that reach that node (logs, exec).
func boundPod(ctx context.Context, conn *natsbus.Conn, ns, arg string) (*manifests.Pod, error) {
	name := strings.TrimPrefix(strings.TrimPrefix(arg, "pod/"), "pods/")
	k, _ := manifests.LookupKind("Pod")
	objs, err := listObjects(ctx, conn, k, ns, name)
	if err != nil {
		return nil, err
	}
	pod := objs[0].(*manifests.Pod)
	if pod.Spec.NodeName == "" {
		return nil, exitError{code: 1, msg: fmt.Sprintf("error: pod %s is not scheduled to a node yet", name)}
	}
	return pod, nil
}
