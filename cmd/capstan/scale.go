//go:build !nodeonly

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/writeback"
)

// Imperative habits that keep Git the truth: `scale` and `rollout undo`
// change nothing on the bus; they commit to the file that declares the
// object (reconciler/writeback: through the control plane for a remote
// repository, from here for a local one or with --git-direct). Here are
// their flags and their printing.

// addGitWriteFlags adds the flags of the commands that write commits.
func addGitWriteFlags(cmd *cobra.Command, w *writeback.Options) {
	cmd.Flags().StringVar(&w.Author, "author", "", `commit author "Name <email>" (default: git config user.name and user.email)`)
	cmd.Flags().BoolVar(&w.Direct, "git-direct", false, "clone, commit and push from here with your own git credentials, instead of asking the control plane to push with the source's (implied by --git-ssh-key and --git-password-file)")
	cmd.Flags().StringVar(&w.SSHKey, "git-ssh-key", "", "private key to push to an ssh:// repository with (default: ssh-agent); implies --git-direct")
	cmd.Flags().StringVar(&w.PasswordFile, "git-password-file", "", "password or token to push to an https:// repository with; implies --git-direct")
	cmd.Flags().StringVar(&w.Username, "git-username", "git", "user name to push to an https:// repository with")
	cmd.Flags().StringVar(&w.SigningKey, "git-signing-key", "", "sign the commits written from here (a local repository, or --git-direct) with this key: armored OpenPGP or SSH private key, without passphrase")
}

func scaleCmd(g *globals) *cobra.Command {
	var ns string
	var replicas int32
	var w writeback.Options
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset|statefulset|replicationcontroller)/NAME --replicas N",
		Short: "Set a workload's replica count by a commit to its source's repository",
		Long: `Set spec.replicas of a workload declared in Git by writing a commit to the
repository of the source that declared it: the file declaring it is edited
in place (comments and layout kept) and committed with your identity. The
control plane writes to a remote repository, pushing with the source's own
credentials and signing with its --git-signing-key; a local working copy on
the source's branch gets the commit directly from here. Nothing changes on
the cluster until the sync applies the commit.`,
		Example: `  capstan scale deployment/web --replicas 5`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") || replicas < 0 {
				return exitError{code: 1, msg: "error: give --replicas N (N >= 0)"}
			}
			conn, obj, err := openTarget(cmd.Context(), g, args, ns, "Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")
			if err != nil {
				return err
			}
			defer conn.Close()
			if owner := obj.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner]; owner != "" {
				fmt.Fprintf(g.stderr, "warning: HorizontalPodAutoscaler %s owns the replica count; Git's count is only its starting point\n", owner)
			}
			target := strings.ToLower(obj.GetTypeMeta().Kind) + "/" + obj.GetObjectMeta().Name
			w.Creds = g.signingCreds()
			res, err := writeback.Commit(cmd.Context(), conn, obj, writeback.Change{Replicas: &replicas}, w)
			if err != nil {
				return writeBackError(err)
			}
			fmt.Fprintf(g.stdout, "%s: %s (commit %s to %s)\n", target, res.Message, shortRev(res.Commit), res.Where)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new replica count")
	addGitWriteFlags(cmd, &w)
	return cmd
}
