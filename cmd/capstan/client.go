//go:build !nodeonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/sops"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/schema"
)

func (g *globals) connect(ctx context.Context) (*natsbus.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nopts, url, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	// The CLI binds to the buckets the control plane set up: it never
	// creates or rewrites them.
	conn, err := natsbus.Connect(ctx, url, natsbus.Options{Name: "capstan-cli", Bind: true, NATSOptions: nopts})
	if err != nil {
		return nil, natsauth.Explain(err, redactURL(url))
	}
	return conn, nil
}

// clientOptions reads the client config: the connection's options and
// the bus URL.
func (g *globals) clientOptions() ([]nats.Option, string, error) {
	if g.insecure {
		return nil, g.serverURL(nil), nil
	}
	cfg, err := natsauth.LoadClientConfig(g.configPath())
	if err != nil {
		return nil, "", err
	}
	nopts, err := cfg.Options()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", g.configPath(), err)
	}
	return nopts, g.serverURL(cfg), nil
}

// signingCreds are the client config's credentials, or nil on a bus
// without identities.
func (g *globals) signingCreds() *natsauth.Creds {
	c, err := g.creds()
	if err != nil {
		return nil
	}
	return &c
}

// creds are the client config's credentials, which sign requests to the
// control plane.
func (g *globals) creds() (natsauth.Creds, error) {
	if g.insecure {
		return natsauth.Creds{}, errors.New("--insecure-bus: no credentials to sign this request with")
	}
	cfg, err := natsauth.LoadClientConfig(g.configPath())
	if err != nil {
		return natsauth.Creds{}, err
	}
	return natsauth.ParseCreds([]byte(cfg.Creds))
}

// listObjects reads the objects of a kind: nodes from their bucket, the
// rest from the objects bucket.
func listObjects(ctx context.Context, conn *natsbus.Conn, k manifests.KindInfo, ns, name string) ([]manifests.Object, error) {
	store, pattern := conn.Objects, k.Kind+".>"
	switch {
	case k.Kind == "Node" && name != "":
		store, pattern = conn.Nodes, name
	case k.Kind == "Node":
		store, pattern = conn.Nodes, ">"
	case name != "":
		pattern = manifests.Key(k.Kind, nsFor(k, ns), name)
	case k.Namespaced && ns != "":
		pattern = k.Kind + "." + ns + ".>"
	}
	entries, err := store.List(ctx, pattern)
	if err != nil {
		return nil, err
	}
	var out []manifests.Object
	for _, e := range entries {
		obj, err := manifests.Decode(e.Value)
		if err != nil {
			continue
		}
		obj.GetObjectMeta().ResourceVersion = fmt.Sprint(e.Revision)
		out = append(out, obj)
	}
	manifests.SortObjects(out)
	if name != "" && len(out) == 0 {
		return nil, exitError{code: 1, msg: fmt.Sprintf("Error: %s %q not found", strings.ToLower(k.Kind), name)}
	}
	return out, nil
}

func nsFor(k manifests.KindInfo, ns string) string {
	if !k.Namespaced {
		return ""
	}
	if ns == "" {
		return "default"
	}
	return ns
}

func resolveKind(arg string) (manifests.KindInfo, string, error) {
	kind, name, _ := strings.Cut(arg, "/")
	k, ok := manifests.ResolveKind(kind)
	if !ok {
		return k, "", exitError{code: 1, msg: fmt.Sprintf("error: the server doesn't have a resource type %q", kind)}
	}
	return k, name, nil
}

func getCmd(g *globals) *cobra.Command {
	var ns, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List objects: pods, replicasets, deployments, services, endpoints, configmaps, secrets, nodes, sources, namespaces",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := resolveKind(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				name = args[1]
			}
			if !all && ns == "" {
				ns = "default"
			}
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			objs, err := listObjects(cmd.Context(), conn, k, ns, name)
			if err != nil {
				return err
			}
			if k.Kind == "Secret" && (output == "json" || output == "yaml") {
				objs = g.secretValues(cmd.Context(), conn, objs) // secrets_atrest.go
			}
			return printObjects(g.stdout, k, objs, output, all && k.Namespaced, name != "")
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")
	return cmd
}

func printObjects(w io.Writer, k manifests.KindInfo, objs []manifests.Object, output string, showNS, single bool) error {
	switch output {
	case "json", "yaml":
		var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": objs}
		if single && len(objs) == 1 {
			v = objs[0]
		}
		if objs == nil && !single {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{}}
		}
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return err
		}
		if output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "table", "wide", "":
	default:
		return exitError{code: 1, msg: fmt.Sprintf("error: unknown output format %q: use table, wide, json or yaml", output)}
	}
	if len(objs) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header, row := columns(k.Kind, output == "wide")
	if showNS {
		header = append([]string{"NAMESPACE"}, header...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, o := range objs {
		cells := row(o)
		if showNS {
			cells = append([]string{o.GetObjectMeta().Namespace}, cells...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// age formats the time since t as kubectl does: 45s, 3m, 5h, 2d.
func age(t *manifests.Time) string {
	if t == nil {
		return "<unknown>"
	}
	d := time.Since(t.Time)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func columns(kind string, wide bool) ([]string, func(manifests.Object) []string) {
	switch kind {
	case "Pod":
		h := []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if wide {
			h = append(h, "NODE", "HOST-IP")
		}
		return h, func(o manifests.Object) []string {
			p := o.(*manifests.Pod)
			ready, restarts := 0, int32(0)
			for _, c := range p.Status.ContainerStatuses {
				if c.Ready {
					ready++
				}
				restarts += c.RestartCount
			}
			r := []string{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), podStatusText(p), fmt.Sprint(restarts), age(p.CreationTimestamp)}
			if wide {
				r = append(r, orNone(p.Spec.NodeName), orNone(p.Status.HostIP))
			}
			return r
		}
	case "Deployment":
		// ROLLOUT (not in kubectl) shows a rollout that failed and was
		// rolled back.
		return []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "ROLLOUT"}, func(o manifests.Object) []string {
			d := o.(*manifests.Deployment)
			return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, manifests.Int32(d.Spec.Replicas, 1)),
				fmt.Sprint(d.Status.UpdatedReplicas), fmt.Sprint(d.Status.AvailableReplicas), age(d.CreationTimestamp), rolloutText(d)}
		}
	case "StatefulSet":
		return []string{"NAME", "READY", "AGE"}, func(o manifests.Object) []string {
			s := o.(*manifests.StatefulSet)
			return []string{s.Name, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, manifests.Int32(s.Spec.Replicas, 1)), age(s.CreationTimestamp)}
		}
	case "DaemonSet":
		return []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE-SELECTOR", "AGE"}, func(o manifests.Object) []string {
			d := o.(*manifests.DaemonSet)
			st := d.Status
			return []string{d.Name, fmt.Sprint(st.DesiredNumberScheduled), fmt.Sprint(st.CurrentNumberScheduled), fmt.Sprint(st.NumberReady),
				fmt.Sprint(st.UpdatedNumberScheduled), fmt.Sprint(st.NumberAvailable), selectorText(d.Spec.Template.Spec.NodeSelector), age(d.CreationTimestamp)}
		}
	case "ReplicationController":
		return []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}, func(o manifests.Object) []string {
			r := o.(*manifests.ReplicationController)
			return []string{r.Name, fmt.Sprint(manifests.Int32(r.Spec.Replicas, 1)), fmt.Sprint(r.Status.Replicas), fmt.Sprint(r.Status.ReadyReplicas), age(r.CreationTimestamp)}
		}
	case "ReplicaSet":
		return []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}, func(o manifests.Object) []string {
			r := o.(*manifests.ReplicaSet)
			return []string{r.Name, fmt.Sprint(manifests.Int32(r.Spec.Replicas, 1)), fmt.Sprint(r.Status.Replicas), fmt.Sprint(r.Status.ReadyReplicas), age(r.CreationTimestamp)}
		}
	case "Job":
		return []string{"NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"}, func(o manifests.Object) []string {
			j := o.(*manifests.Job)
			status := "Running"
			for _, t := range []string{"Complete", "Failed", "Suspended"} {
				if c := manifests.FindCondition(j.Status.Conditions, t); c != nil && c.Status == manifests.ConditionTrue {
					status = t
					break
				}
			}
			completions := fmt.Sprintf("%d/%d", j.Status.Succeeded, manifests.Int32(j.Spec.Completions, 1))
			if j.Spec.Completions == nil && j.Spec.Parallelism != nil {
				completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
			}
			duration := ""
			if st := j.Status.StartTime; st != nil {
				end := time.Now()
				if ct := j.Status.CompletionTime; ct != nil {
					end = ct.Time
				}
				duration = age(manifests.NewTime(time.Now().Add(-end.Sub(st.Time)))) // kubectl's format for a span
			}
			return []string{j.Name, status, completions, duration, age(j.CreationTimestamp)}
		}
	case "CronJob":
		return []string{"NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"}, func(o manifests.Object) []string {
			c := o.(*manifests.CronJob)
			tz := "<none>"
			if c.Spec.TimeZone != nil {
				tz = *c.Spec.TimeZone
			}
			last := "<none>"
			if c.Status.LastScheduleTime != nil {
				last = age(c.Status.LastScheduleTime)
			}
			return []string{c.Name, c.Spec.Schedule, tz, fmt.Sprint(c.Spec.Suspend != nil && *c.Spec.Suspend), fmt.Sprint(len(c.Status.Active)), last, age(c.CreationTimestamp)}
		}
	case "HorizontalPodAutoscaler":
		return []string{"NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"}, func(o manifests.Object) []string {
			h := o.(*manifests.HorizontalPodAutoscaler)
			current := "<unknown>"
			if u := h.Status.CurrentCPUUtilizationPercentage; u != nil {
				current = fmt.Sprintf("%d%%", *u)
			}
			var targets []string
			for _, m := range h.Spec.Metrics {
				if m.Resource == nil {
					continue
				}
				switch t := m.Resource.Target; {
				case t.AverageUtilization != nil && m.Resource.Name == "cpu":
					targets = append(targets, fmt.Sprintf("cpu: %s/%d%%", current, *t.AverageUtilization))
				case t.AverageUtilization != nil:
					targets = append(targets, fmt.Sprintf("%s: <unknown>/%d%%", m.Resource.Name, *t.AverageUtilization))
				case t.AverageValue != nil:
					targets = append(targets, fmt.Sprintf("%s: <unknown>/%s", m.Resource.Name, *t.AverageValue))
				}
			}
			if len(h.Spec.Metrics) == 0 {
				targets = []string{fmt.Sprintf("cpu: %s/%d%%", current, manifests.Int32(h.Spec.TargetCPUUtilizationPercentage, 80))}
			}
			ref := h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name
			return []string{h.Name, ref, strings.Join(targets, ", "), fmt.Sprint(manifests.Int32(h.Spec.MinReplicas, 1)), fmt.Sprint(h.Spec.MaxReplicas),
				fmt.Sprint(h.Status.CurrentReplicas), age(h.CreationTimestamp)}
		}
	case "Node":
		return []string{"NAME", "STATUS", "ADDRESS", "AGE", "VERSION"}, func(o manifests.Object) []string {
			n := o.(*manifests.Node)
			st := "NotReady"
			if manifests.IsNodeReady(n) {
				st = "Ready"
			}
			if c := manifests.FindCondition(n.Status.Conditions, "Ready"); c != nil && c.Status == manifests.ConditionUnknown {
				st = "NotReady (Unknown)"
			}
			if n.Spec.Unschedulable {
				st += ",SchedulingDisabled"
			}
			addr := ""
			for _, a := range n.Status.Addresses {
				if a.Type == "InternalIP" {
					addr = a.Address
				}
			}
			return []string{n.Name, st, addr, age(firstSeen(n)), n.Status.NodeInfo.ContainerRuntimeVersion}
		}
	case "Service":
		h := []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
		if wide {
			h = append(h, "SELECTOR")
		}
		return h, func(o manifests.Object) []string {
			s := o.(*manifests.Service)
			r := []string{s.Name, s.Spec.Type, serviceIPText(s), orNone(s.Spec.ExternalName), servicePortsText(s), age(s.CreationTimestamp)}
			if wide {
				r = append(r, selectorText(s.Spec.Selector))
			}
			return r
		}
	case "EndpointSlice":
		return []string{"NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"}, func(o manifests.Object) []string {
			s := o.(*manifests.EndpointSlice)
			return []string{s.Name, s.AddressType, endpointPortsText(s), endpointsText(s), age(s.CreationTimestamp)}
		}
	case "Namespace":
		return []string{"NAME", "STATUS", "AGE"}, func(o manifests.Object) []string {
			n := o.(*manifests.Namespace)
			return []string{n.Name, "Active", age(n.CreationTimestamp)}
		}
	case "ConfigMap":
		return []string{"NAME", "DATA", "AGE"}, func(o manifests.Object) []string {
			c := o.(*manifests.ConfigMap)
			return []string{c.Name, fmt.Sprint(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp)}
		}
	case "Secret":
		return []string{"NAME", "TYPE", "DATA", "AGE"}, func(o manifests.Object) []string {
			s := o.(*manifests.Secret)
			return []string{s.Name, s.Type, fmt.Sprint(len(s.Data)), age(s.CreationTimestamp)}
		}
	case "Source":
		h := []string{"NAME", "HEALTH", "APPLIED", "ATTEMPTED", "LAST-SYNC", "MESSAGE"}
		if wide {
			h = append(h, "URL", "REF", "PATH")
		}
		return h, func(o manifests.Object) []string {
			s := o.(*manifests.Source)
			health := s.Status.Health
			if health == "" {
				health = "Unknown"
			}
			r := []string{s.Name, health, shortRev(s.Status.AppliedRevision), shortRev(s.Status.AttemptedRevision), age(s.Status.LastSyncTime), sourceMessage(s)}
			if wide {
				path := s.Spec.Path
				if path == "" {
					path = "/"
				}
				r = append(r, s.Spec.URL, sourceRef(s.Spec), path)
			}
			return r
		}
	}
	return []string{"NAME", "AGE"}, func(o manifests.Object) []string {
		return []string{o.GetObjectMeta().Name, age(o.GetObjectMeta().CreationTimestamp)}
	}
}

// serviceIPText is a Service's CLUSTER-IP column: its cluster IPs, None
// for a headless one, <pending> before one is allocated.
func serviceIPText(s *manifests.Service) string {
	switch {
	case s.Spec.Type == manifests.ServiceExternalName:
		return "<none>"
	case len(s.Spec.ClusterIPs) > 0:
		return strings.Join(s.Spec.ClusterIPs, ",")
	case s.Spec.ClusterIP != "":
		return s.Spec.ClusterIP
	}
	return "<pending>"
}

// servicePortsText is a Service's PORT(S) column, as kubectl shows it:
// 80/TCP, or 80:31234/TCP with a node port.
func servicePortsText(s *manifests.Service) string {
	parts := make([]string, 0, len(s.Spec.Ports))
	for _, p := range s.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if p.NodePort != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, proto))
		}
	}
	return orNone(strings.Join(parts, ","))
}

// endpointPortsText is an EndpointSlice's PORTS column: the service ports.
func endpointPortsText(s *manifests.EndpointSlice) string {
	parts := make([]string, 0, len(s.Ports))
	for _, p := range s.Ports {
		if p.Port != nil {
			parts = append(parts, fmt.Sprint(*p.Port))
		}
	}
	return orNone(strings.Join(parts, ","))
}

// endpointsText is an EndpointSlice's ENDPOINTS column: each endpoint as
// node-address:host-port (of its first port), with (not ready) or
// (terminating) after those that take no new traffic; at most four, then
// "+ N more...".
func endpointsText(s *manifests.EndpointSlice) string {
	var parts []string
	for _, e := range s.Endpoints {
		addr := strings.Join(e.Addresses, ",")
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == "" && p.Port != nil {
				name = fmt.Sprint(*p.Port)
			}
			if hp, ok := e.HostPorts[name]; ok {
				addr = fmt.Sprintf("%s:%d", addr, hp)
				break
			}
		}
		switch c := e.Conditions; {
		case c.Terminating != nil && *c.Terminating:
			addr += " (terminating)"
		case c.Ready != nil && !*c.Ready:
			addr += " (not ready)"
		}
		parts = append(parts, addr)
	}
	if len(parts) > 4 {
		parts = append(parts[:4], fmt.Sprintf("+ %d more...", len(parts)-4))
	}
	return orNone(strings.Join(parts, ", "))
}

// describeService prints a Service's endpoints: every pod its selector
// matches, with its node, address and host ports, and why it is not a
// ready endpoint. It computes them as the endpoints controller does.
func describeService(ctx context.Context, w io.Writer, conn *natsbus.Conn, svc *manifests.Service) error {
	if !controllers.HasSelector(svc) {
		fmt.Fprintln(w, "Endpoints:  <none> (no selector: Capstan manages no endpoints for it)")
		return nil
	}
	podObjs, err := listObjects(ctx, conn, manifests.KindInfo{Kind: "Pod", Namespaced: true}, svc.Namespace, "")
	if err != nil {
		return err
	}
	nodeObjs, err := listObjects(ctx, conn, manifests.KindInfo{Kind: "Node"}, "", "")
	if err != nil {
		return err
	}
	pods := make([]*manifests.Pod, 0, len(podObjs))
	for _, o := range podObjs {
		pods = append(pods, o.(*manifests.Pod))
	}
	nodes := map[string]*manifests.Node{}
	for _, o := range nodeObjs {
		nodes[o.GetObjectMeta().Name] = o.(*manifests.Node)
	}
	res := controllers.EndpointsFor(svc, pods, nodes)
	if len(res.Pods) == 0 {
		fmt.Fprintf(w, "Endpoints:  <none> (selector %s matches no pod)\n", selectorText(svc.Spec.Selector))
		return nil
	}
	byPod := map[string]manifests.Endpoint{}
	for _, e := range res.Endpoints {
		byPod[e.TargetRef.Name] = e
	}
	fmt.Fprintln(w, "Endpoints:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  POD	NODE	ADDRESS	HOST-PORTS	READY	WHY NOT READY")
	for _, p := range res.Pods {
		node, addr, ports, ready := "<none>", "<none>", "<none>", "false"
		if e, ok := byPod[p.Pod]; ok {
			node, addr = *e.NodeName, strings.Join(e.Addresses, ",")
			var hp []string
			for _, k := range slices.Sorted(maps.Keys(e.HostPorts)) {
				hp = append(hp, fmt.Sprintf("%s=%d", k, e.HostPorts[k]))
			}
			ports = orNone(strings.Join(hp, ","))
		}
		if p.Ready {
			ready = "true"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.Pod, node, addr, ports, ready, orNone(p.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// sourceMessage is a Source's MESSAGE column: its last sync error, else
// what its health says.
func sourceMessage(s *manifests.Source) string {
	if s.Status.LastError != "" {
		l, _, _ := strings.Cut(s.Status.LastError, "\n")
		return l
	}
	if c := manifests.FindCondition(s.Status.Conditions, "Healthy"); c != nil {
		return c.Message
	}
	if c := manifests.FindCondition(s.Status.Conditions, "Ready"); c != nil {
		return c.Message
	}
	return ""
}

// sourceRef is a Source's REF column: branch main, tag v1, semver ~1.2,
// commit 0123456789ab; "HEAD" for the remote's default branch.
func sourceRef(spec manifests.SourceSpec) string {
	switch r := spec.Ref; {
	case r != nil && r.Tag != "":
		return "tag " + r.Tag
	case r != nil && r.SemVer != "":
		return "semver " + r.SemVer
	case r != nil && r.Commit != "":
		return "commit " + shortRev(r.Commit)
	case r != nil && r.Branch != "":
		return "branch " + r.Branch
	case spec.Branch != "":
		return "branch " + spec.Branch
	}
	return "HEAD"
}

// describeSource prints a Source's state before its YAML.
func describeSource(w io.Writer, s *manifests.Source) {
	health := s.Status.Health
	if health == "" {
		health = "Unknown"
	}
	fmt.Fprintf(w, "Health:     %s\n", health)
	if c := manifests.FindCondition(s.Status.Conditions, "Healthy"); c != nil && c.Message != "" {
		fmt.Fprintf(w, "            %s\n", c.Message)
	}
	fmt.Fprintf(w, "URL:        %s\n", s.Spec.URL)
	fmt.Fprintf(w, "Ref:        %s\n", sourceRef(s.Spec))
	if s.Spec.Path != "" {
		fmt.Fprintf(w, "Path:       %s\n", s.Spec.Path)
	}
	if s.Spec.Suspend {
		fmt.Fprintln(w, "Suspended:  yes")
	}
	if s.Spec.Prune != nil && !*s.Spec.Prune {
		fmt.Fprintln(w, "Prune:      off")
	}
	if d := s.Spec.Drift; d != nil && d.Mode != "" {
		fmt.Fprintf(w, "Drift:      %s (%d ignore rule(s))\n", d.Mode, len(d.Ignore))
	}
	for _, dep := range s.Spec.DependsOn {
		fmt.Fprintf(w, "Depends on: %s\n", dep.Name)
	}
	fmt.Fprintf(w, "Applied:    %s\n", orNone(s.Status.AppliedRevision))
	fmt.Fprintf(w, "Attempted:  %s\n", orNone(s.Status.AttemptedRevision))
	if s.Status.LastSyncTime != nil {
		fmt.Fprintf(w, "Last sync:  %s ago\n", age(s.Status.LastSyncTime))
	}
	fmt.Fprintf(w, "Objects:    %d\n", s.Status.Objects)
	if s.Status.LastError != "" {
		fmt.Fprintln(w, "Last error:")
		for l := range strings.SplitSeq(s.Status.LastError, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// rolloutText is a Deployment's ROLLOUT column: Complete, Progressing,
// Paused, or RolledBack when its rollout exceeded the progress deadline.
func rolloutText(d *manifests.Deployment) string {
	c := manifests.FindCondition(d.Status.Conditions, "Progressing")
	switch {
	case d.Spec.Paused:
		return "Paused"
	case c == nil:
		return "<none>"
	case c.Reason == "ProgressDeadlineExceeded" && strings.Contains(c.Message, "Rolled back"):
		return "RolledBack"
	case c.Reason == "ProgressDeadlineExceeded":
		return "Failed"
	case c.Reason == "NewReplicaSetAvailable":
		return "Complete"
	}
	return "Progressing"
}

// selectorText formats a node selector as kubectl does: k=v,k2=v2.
func selectorText(sel map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return orNone(strings.Join(parts, ","))
}

func firstSeen(n *manifests.Node) *manifests.Time {
	if n.CreationTimestamp != nil {
		return n.CreationTimestamp
	}
	if c := manifests.FindCondition(n.Status.Conditions, "Ready"); c != nil {
		return c.LastTransitionTime
	}
	return nil
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return orNone(r)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// podStatusText is the STATUS column: a container's waiting or terminated
// reason when there is one, else the phase, as kubectl shows.
func podStatusText(p *manifests.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			return w.Reason
		}
		if t := c.State.Terminated; t != nil && t.Reason != "" && p.Status.Phase != manifests.PodSucceeded {
			return t.Reason
		}
	}
	if c := manifests.FindCondition(p.Status.Conditions, "PodScheduled"); c != nil && c.Status == manifests.ConditionFalse {
		return "Pending"
	}
	if p.Status.Phase == manifests.PodPending && p.Spec.NodeName != "" {
		return "ContainerCreating"
	}
	if c := manifests.FindCondition(p.Status.Conditions, "Ready"); c != nil && c.Reason == "NodeLost" {
		return "Unknown"
	}
	if p.Status.Phase == manifests.PodSucceeded {
		return "Completed"
	}
	if p.Status.Phase == "" {
		return "Pending"
	}
	return p.Status.Phase
}

func describeCmd(g *globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one object in detail, with its events",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := resolveKind(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				name = args[1]
			}
			if name == "" {
				return exitError{code: 1, msg: "error: describe needs a name: capstan describe KIND NAME"}
			}
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			objs, err := listObjects(cmd.Context(), conn, k, ns, name)
			if err != nil {
				return err
			}
			obj := objs[0]
			b, err := json.Marshal(shownObject(obj)) // a Secret's values hidden
			if err != nil {
				return err
			}
			y, err := yaml.JSONToYAML(b)
			if err != nil {
				return err
			}
			m := obj.GetObjectMeta()
			fmt.Fprintf(g.stdout, "Name:       %s\n", m.Name)
			if k.Namespaced {
				fmt.Fprintf(g.stdout, "Namespace:  %s\n", m.Namespace)
			}
			fmt.Fprintf(g.stdout, "Kind:       %s\n", k.Kind)
			if src := m.Annotations[manifests.AnnotationSource]; src != "" {
				fmt.Fprintf(g.stdout, "Source:     %s\n", src)
			}
			if ref := m.Controller(); ref != nil {
				fmt.Fprintf(g.stdout, "Controlled By:  %s/%s\n", ref.Kind, ref.Name)
			}
			if hpa := m.Annotations[manifests.AnnotationReplicasOwner]; hpa != "" {
				fmt.Fprintf(g.stdout, "Replicas:   owned by HorizontalPodAutoscaler %s (Git's count was the starting point)\n", hpa)
			}
			if src, ok := obj.(*manifests.Source); ok {
				describeSource(g.stdout, src)
			}
			fmt.Fprintf(g.stdout, "\n%s\n", y)
			if svc, ok := obj.(*manifests.Service); ok {
				if err := describeService(cmd.Context(), g.stdout, conn, svc); err != nil {
					return err
				}
			}
			evs, err := conn.Events.List(cmd.Context(), k.Kind, m.Namespace, m.Name)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "Events:")
			if len(evs) == 0 {
				fmt.Fprintln(g.stdout, "  <none>")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
			for _, e := range evs {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age(e.Time), e.Source, e.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	return cmd
}

func logsCmd(g *globals) *cobra.Command {
	var ns, container string
	var follow, previous bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print a container's output, from the node that runs it",
		Args:  cobra.ExactArgs(1),
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
			return node.FetchLogs(cmd.Context(), conn.NC, pod.Spec.NodeName, node.LogRequest{
				Namespace: pod.Namespace, Pod: pod.Name, Container: container, Follow: follow, Tail: tail, Previous: previous,
			}, g.stdout)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().StringVarP(&container, "container", "c", "", "container name (needed when the pod has several)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new output")
	cmd.Flags().BoolVarP(&previous, "previous", "p", false, "the previous instance of the container")
	cmd.Flags().IntVar(&tail, "tail", -1, "lines from the end to show; -1 for all")
	return cmd
}

func historyCmd(g *globals) *cobra.Command {
	var output, source, ns string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "history [KIND/NAME]",
		Short: "Show every sync attempt, or every applied change of one object (history deployment/web)",
		Long: `Without an argument, show every sync attempt: commit, author, result,
errors and changes; and every action outside a sync (drift removed,
write-backs of scale and rollout undo) with its actor. With KIND/NAME,
show every applied change of that one object: when, which commit, who,
what action and which fields.`,
		Example: `  capstan history
  capstan history deployment/web --since 24h
  capstan history configmap/settings -n shop -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var target *objectRef
			if len(args) == 1 {
				var err error
				if target, err = parseObjectRef(args[0], ns); err != nil {
					return err
				}
			}
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			var from time.Time
			if since > 0 {
				from = time.Now().Add(-since)
			}
			recs, err := conn.Audit.List(cmd.Context(), source, from)
			if err != nil {
				return err
			}
			if target != nil {
				return printObjectHistory(g.stdout, *target, objectHistory(recs, *target), output)
			}
			return printHistory(g.stdout, recs, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().StringVar(&source, "source", "", "only this source")
	cmd.Flags().DurationVar(&since, "since", 0, "only records newer than this (e.g. 1h)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace of KIND/NAME (default \"default\")")
	return cmd
}

func printHistory(w io.Writer, recs []manifests.AuditRecord, output string) error {
	if output == "json" {
		if recs == nil {
			recs = []manifests.AuditRecord{}
		}
		b, err := json.MarshalIndent(map[string]any{"items": recs}, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	if len(recs) == 0 {
		_, err := fmt.Fprintln(w, "No sync attempts recorded.")
		return err
	}
	// One block per attempt, like git log: the record, its message, then
	// the changes and errors indented.
	for i, r := range recs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, recordHeader(r)) // history.go
		if msg, _, _ := strings.Cut(r.Message, "\n"); msg != "" {
			fmt.Fprintf(w, "    %s\n", msg)
		}
		for _, c := range r.Changes {
			fields := ""
			if len(c.Fields) > 0 {
				fields = ": " + strings.Join(c.Fields, ", ")
			}
			fmt.Fprintf(w, "    %s %s %s%s\n", c.Action, strings.ToLower(c.Kind), manifests.JoinName(c.Namespace, c.Name), fields)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "    error: %s\n", e)
		}
	}
	return nil
}

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH...",
		Short: "Validate manifest files or directories; exit 1 with file:line:col errors",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := schema.ReadPaths(args...)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			// Encrypted Secrets validate without their key: their values
			// are checked by the control plane that holds it.
			objs, err := sops.LoadSecrets(schema.Load, nil)(files)
			if err != nil {
				var el *schema.ErrorList
				if errors.As(err, &el) {
					for _, e := range el.Errors {
						fmt.Fprintln(g.stderr, e.Error())
					}
					return exitError{code: 1, msg: fmt.Sprintf("%d error(s)", len(el.Errors))}
				}
				return exitError{code: 1, msg: err.Error()}
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetTypeMeta().Kind]++
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(kinds)) {
				parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
			}
			fmt.Fprintf(g.stdout, "valid: %d object(s) (%s)\n", len(objs), strings.Join(parts, ", "))
			return nil
		},
	}
}
