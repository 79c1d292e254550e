//go:build !nodeonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/writeback"
)

func rolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow a rollout, or list a Deployment's revisions",
	}
	cmd.AddCommand(rolloutStatusCmd(g), rolloutHistoryCmd(g), rolloutUndoCmd(g))
	return cmd
}

// rolloutTarget reads KIND/NAME or KIND NAME.
func rolloutTarget(args []string, allowed ...string) (manifests.KindInfo, string, error) {
	k, name, err := resolveKind(args[0])
	if err != nil {
		return k, "", err
	}
	if len(args) == 2 {
		name = args[1]
	}
	if name == "" {
		return k, "", exitError{code: 1, msg: "error: give the object as KIND/NAME, e.g. deployment/web"}
	}
	for _, a := range allowed {
		if k.Kind == a {
			return k, name, nil
		}
	}
	return k, "", exitError{code: 1, msg: fmt.Sprintf("error: no rollout for %s: only %s", strings.ToLower(k.Kind), strings.ToLower(strings.Join(allowed, ", ")))}
}

func rolloutStatusCmd(g *globals) *cobra.Command {
	var ns string
	var timeout time.Duration
	var watch bool
	cmd := &cobra.Command{
		Use:   "status (deployment|statefulset|daemonset)/NAME",
		Short: "Follow a rollout until it completes; exit 1 if it fails or --timeout passes",
		Long: `Follow a rollout live, printing a line each time its progress changes, as
kubectl does. Exits 0 once the rollout is complete, 1 when it failed (a
Deployment past its progressDeadlineSeconds, which Capstan rolls back) or
when --timeout passes.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := rolloutTarget(args, "Deployment", "StatefulSet", "DaemonSet")
			if err != nil {
				return err
			}
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			ch, err := conn.Objects.Watch(ctx, manifests.Key(k.Kind, nsFor(k, ns), name))
			if err != nil {
				return err
			}
			return followRollout(ctx, g, k, name, ch, watch)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "follow until the rollout ends; false prints the status once")
	return cmd
}

// followRollout prints the rollout's progress from a watch of the object
// until it completes, fails, is deleted or ctx ends.
func followRollout(ctx context.Context, g *globals, k manifests.KindInfo, name string, ch <-chan bus.Entry, watch bool) error {
	found := false
	last := ""
	for e := range ch {
		switch e.Op {
		case bus.OpSynced:
			if !found {
				return exitError{code: 1, msg: fmt.Sprintf("Error: %s %q not found", strings.ToLower(k.Kind), name)}
			}
			continue
		case bus.OpDelete:
			return exitError{code: 1, msg: fmt.Sprintf("error: %s %q was deleted", strings.ToLower(k.Kind), name)}
		}
		found = true
		obj, err := manifests.Decode(e.Value)
		if err != nil {
			return err
		}
		msg, done, err := controllers.RolloutStatus(obj)
		if err != nil {
			if errors.Is(err, controllers.ErrRolloutFailed) {
				return exitError{code: 1, msg: "error: " + strings.TrimPrefix(err.Error(), controllers.ErrRolloutFailed.Error()+": ")}
			}
			return exitError{code: 1, msg: "error: " + err.Error()}
		}
		if msg != last {
			fmt.Fprintln(g.stdout, msg)
			last = msg
		}
		if done || !watch {
			return nil
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return exitError{code: 1, msg: "error: timed out waiting for the condition"}
	}
	return ctx.Err()
}

func rolloutHistoryCmd(g *globals) *cobra.Command {
	var ns, output string
	var revision int64
	cmd := &cobra.Command{
		Use:   "history deployment/NAME",
		Short: "List a Deployment's revisions with the commit that made each",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, obj, err := openTarget(cmd.Context(), g, args, ns, "Deployment")
			if err != nil {
				return err
			}
			defer conn.Close()
			d := obj.(*manifests.Deployment)
			rsKind, _ := manifests.LookupKind("ReplicaSet")
			rsObjs, err := listObjects(cmd.Context(), conn, rsKind, d.Namespace, "")
			if err != nil {
				return err
			}
			var sets []*manifests.ReplicaSet
			for _, o := range rsObjs {
				sets = append(sets, o.(*manifests.ReplicaSet))
			}
			hist := controllers.DeploymentHistory(d, sets)
			// The commits' messages, from the sync's audit records.
			subjects := map[string]string{}
			if recs, err := conn.Audit.List(cmd.Context(), "", time.Time{}); err == nil {
				for _, r := range recs {
					if !r.IsSync() {
						continue // a drift or write-back record's message is not the commit's
					}
					subject, _, _ := strings.Cut(r.Message, "\n")
					subjects[r.Revision] = subject
				}
			}
			if revision > 0 {
				for _, rs := range sets {
					if h := controllers.DeploymentHistory(d, []*manifests.ReplicaSet{rs}); len(h) == 1 && h[0].Revision == revision {
						return printRevision(g, d, h[0], rs, subjects)
					}
				}
				return exitError{code: 1, msg: fmt.Sprintf("error: unable to find the specified revision %d", revision)}
			}
			if output == "json" {
				b, err := json.MarshalIndent(map[string]any{"items": hist}, "", "    ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			fmt.Fprintf(g.stdout, "deployment %q\n", d.Name)
			tw := tabwriter.NewWriter(g.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tREPLICASET\tIMAGES\tCHANGE-CAUSE")
			for _, h := range hist {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", h.Revision, h.ReplicaSet, strings.Join(h.Images, ","), changeCause(h, subjects))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// changeCause is a revision's CHANGE-CAUSE: the commit that declared it and
// its subject, or the change-cause annotation; a failed rollout says so.
func changeCause(h controllers.RolloutRevision, subjects map[string]string) string {
	var parts []string
	if h.Commit != "" {
		c := "commit " + shortRev(h.Commit)
		if s := subjects[h.Commit]; s != "" {
			c += ": " + s
		}
		parts = append(parts, c)
	}
	if h.ChangeCause != "" {
		parts = append(parts, h.ChangeCause)
	}
	if h.Failed {
		parts = append(parts, "(failed: exceeded its progress deadline, rolled back)")
	}
	if len(parts) == 0 {
		return "<none>"
	}
	return strings.Join(parts, " ")
}

func printRevision(g *globals, d *manifests.Deployment, h controllers.RolloutRevision, rs *manifests.ReplicaSet, subjects map[string]string) error {
	b, err := json.Marshal(rs.Spec.Template)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "deployment %q with revision #%d\nReplicaSet: %s\nChange cause: %s\nPod Template:\n", d.Name, h.Revision, h.ReplicaSet, changeCause(h, subjects))
	for _, l := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
		fmt.Fprintf(g.stdout, "  %s\n", l)
	}
	return nil
}

func rolloutUndoCmd(g *globals) *cobra.Command {
	var ns string
	var toRevision int64
	var w writeback.Options
	cmd := &cobra.Command{
		Use:   "undo deployment/NAME [--to-revision N]",
		Short: "Roll a Deployment back to an earlier revision by a commit to its source's repository",
		Long: `Roll a Deployment back to an earlier revision (default: the previous one) by
writing a commit: the pod template of that revision replaces the template
in the file declaring the Deployment (the template as the revision's
commit wrote it, else as its ReplicaSet holds it), committed with your
identity as "capstan scale" does (by the control plane for a remote
repository). The cluster rolls back when the sync
applies the commit.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, obj, err := openTarget(cmd.Context(), g, args, ns, "Deployment")
			if err != nil {
				return err
			}
			defer conn.Close()
			w.Creds = g.signingCreds()
			res, err := writeback.Commit(cmd.Context(), conn, obj, writeback.Change{Undo: true, ToRevision: toRevision}, w)
			if err != nil {
				return writeBackError(err)
			}
			if res.Done != "" {
				fmt.Fprintln(g.stdout, res.Done)
				return nil
			}
			fmt.Fprintf(g.stdout, "deployment/%s: %s (commit %s to %s)\n", obj.GetObjectMeta().Name, res.Message, shortRev(res.Commit), res.Where)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to (default: the previous one)")
	addGitWriteFlags(cmd, &w)
	return cmd
}

// openTarget connects to the bus and reads the one object args name
// (KIND/NAME or KIND NAME, KIND among kinds); the caller closes conn.
func openTarget(ctx context.Context, g *globals, args []string, ns string, kinds ...string) (*natsbus.Conn, manifests.Object, error) {
	k, name, err := rolloutTarget(args, kinds...)
	if err != nil {
		return nil, nil, err
	}
	conn, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	objs, err := listObjects(ctx, conn, k, nsFor(k, ns), name)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, objs[0], nil
}
