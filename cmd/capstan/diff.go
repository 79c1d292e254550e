//go:build !nodeonly

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/secrets/sops"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/reconciler/ownership"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/dir"
	"github.com/capstan-io/capstan/sources/git"
)

// Exit codes of `capstan diff`, as diff(1) has them.
const (
	diffSame    = 0
	diffChanged = 1
	diffTrouble = 2
)

func diffCmd(g *globals) *cobra.Command {
	var ref, base, repo, subPath, source, output string
	cmd := &cobra.Command{
		Use:   "diff [PATH]",
		Short: "Show what a branch, a commit or a directory would change: objects created, deleted, changed field by field",
		Long: `Show what a branch, a commit or a local directory would change if it were
applied: objects created, deleted (or kept, when annotated
capstan.io/prune: disabled) and updated field by field, and the validation
errors with file:line:col.

What is compared (the new side) is PATH, a local directory or file, or else
--ref REF of the repository --repo (default HEAD of the current directory's
repository). It is compared with what the source --source has applied now
on the cluster at --server, or, with --base REF, with another revision of the
same repository: no cluster needed, so a CI job can run it on a pull request.

Exit status: 0 no change, 1 changes, 2 errors (invalid manifests, an
unreadable revision, an unreachable bus).`,
		Example: `  capstan diff --ref feature                         # a branch against the cluster
  capstan diff ./manifests                           # a working directory against the cluster
  capstan diff --ref HEAD --base origin/main -o markdown   # a pull request in CI, no cluster`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "markdown" {
				return exitError{code: diffTrouble, msg: fmt.Sprintf("error: --output %q: want text or markdown", output)}
			}
			if len(args) == 1 && ref != "" {
				return exitError{code: diffTrouble, msg: "error: give PATH or --ref, not both"}
			}
			d := &differ{g: g, ref: ref, base: base, repo: repo, path: subPath, pathSet: cmd.Flags().Changed("path"), source: source}
			if len(args) == 1 {
				d.dirPath = args[0]
			}
			rep, err := d.run(cmd.Context())
			if err != nil {
				return exitError{code: diffTrouble, msg: "error: " + err.Error()}
			}
			if output == "markdown" {
				err = writeDiffMarkdown(g.stdout, rep)
			} else {
				err = writeDiffText(g.stdout, rep)
			}
			if err != nil {
				return exitError{code: diffTrouble, msg: "error: " + err.Error()}
			}
			if code := rep.exitCode(); code != diffSame {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "branch, tag or commit of --repo to compare (default HEAD, unless PATH is given)")
	cmd.Flags().StringVar(&base, "base", "", "compare with this ref of --repo instead of the cluster (no --server needed)")
	cmd.Flags().StringVar(&repo, "repo", ".", "the git repository holding --ref and --base")
	cmd.Flags().StringVar(&subPath, "path", "", "directory inside the repository holding the manifests (default: the source's path on the cluster, else the root)")
	cmd.Flags().StringVar(&source, "source", "root", "the source whose applied objects are compared (cluster mode)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, or markdown for a pull-request comment")
	return cmd
}

// diffReport is what `capstan diff` found.
type diffReport struct {
	Target     string // what is compared: "feature (1a2b3c4d5e6f)"
	Base       string // what with: "the cluster (source root, revision ...)"
	Changes    []objChange
	Errors     []string // validation errors of the target, or conflicts
	BaseErrors []string // validation errors of an offline base
}

// objChange is one object the target would create, update, delete or keep.
type objChange = ownership.Change

// fieldChange is one leaf that differs; Old or New is "" where the field
// is absent. Values are JSON.
type fieldChange = ownership.FieldChange

func (r *diffReport) exitCode() int {
	switch {
	case len(r.Errors) > 0 || len(r.BaseErrors) > 0:
		return diffTrouble
	case len(r.Changes) > 0:
		return diffChanged
	}
	return diffSame
}

// differ reads both sides and compares them.
type differ struct {
	g               *globals
	dirPath         string // a local directory or file, instead of ref
	ref, base, repo string
	path            string // inside the repository
	pathSet         bool   // path given, not to be taken from the cluster
	source          string
}

func (d *differ) run(ctx context.Context) (*diffReport, error) {
	rep := &diffReport{}
	var current []manifests.Object // the base side
	var others map[string]string   // key -> owner, for keys another owner holds
	var audit bus.Audit
	var policy *manifests.DriftPolicy // the source's drift rules, from the cluster
	cluster := d.base == ""
	if cluster {
		conn, err := d.g.connect(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		audit = conn.Audit
		src, err := sourceObject(ctx, conn.Objects, d.source)
		if err != nil {
			return nil, err
		}
		if !d.pathSet && src != nil {
			d.path = src.Spec.Path // compare the directory the source follows
		}
		if src != nil {
			policy = src.Spec.Drift // its ignore rules, as the sync applies them
		}
		applied := "nothing applied yet"
		if src != nil && src.Status.AppliedRevision != "" {
			applied = "revision " + shortRev(src.Status.AppliedRevision)
		}
		rep.Base = fmt.Sprintf("the cluster (source %s, %s)", d.source, applied)
		if current, others, err = clusterObjects(ctx, conn.Objects, d.source); err != nil {
			return nil, err
		}
		current = d.g.clusterSecretValues(ctx, conn, current) // secrets_atrest.go
	} else {
		rev, err := git.ReadRevision(d.repo, d.base, d.path)
		if err != nil {
			return nil, err
		}
		rep.Base = fmt.Sprintf("%s (%s)", d.base, shortRev(rev.ID))
		objs, err := loadFiles(rev.Files, d.path)
		if err != nil {
			lines, lerr := validationLines(err)
			if lerr != nil {
				return nil, lerr
			}
			rep.BaseErrors = lines
			return rep, nil
		}
		current = objs
	}

	files, what, err := d.readTarget(ctx)
	if err != nil {
		return nil, err
	}
	rep.Target = what
	declared, err := loadFiles(files, d.filePrefix())
	if err != nil {
		if rep.Errors, err = validationLines(err); err != nil {
			return nil, err
		}
		return rep, nil
	}
	sourceName := ""
	if cluster {
		sourceName = d.source
	}
	if rep.Changes, rep.Errors, err = diffObjects(declared, current, others, sourceName, policy); err != nil {
		return nil, err
	}
	if cluster && slices.ContainsFunc(rep.Changes, func(c objChange) bool { return c.Action == "kept" }) {
		if rep.Changes, err = dropAlreadyKept(ctx, audit, d.source, rep.Changes); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// dropAlreadyKept removes the "kept" changes of objects the sync kept
// already. A kept object keeps its source annotation, so the bucket alone
// cannot tell one leaving the inventory now from one that left it long
// ago; the audit stream can: its last recorded change is "kept".
func dropAlreadyKept(ctx context.Context, audit bus.Audit, source string, changes []objChange) ([]objChange, error) {
	recs, err := audit.List(ctx, source, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("read history of source %s: %w", source, err)
	}
	last := map[string]string{} // key -> last action
	for _, r := range recs {
		for _, c := range r.Changes {
			last[manifests.Key(c.Kind, c.Namespace, c.Name)] = c.Action
		}
	}
	return slices.DeleteFunc(changes, func(c objChange) bool {
		return c.Action == "kept" && last[manifests.Key(c.Kind, c.Namespace, c.Name)] == "kept"
	}), nil
}

// readTarget reads the new side's files and describes it.
func (d *differ) readTarget(ctx context.Context) ([]manifests.File, string, error) {
	if d.dirPath != "" {
		fi, err := os.Stat(d.dirPath)
		if err != nil {
			return nil, "", err
		}
		if !fi.IsDir() {
			data, err := os.ReadFile(d.dirPath)
			if err != nil {
				return nil, "", err
			}
			return []manifests.File{{Path: filepath.Base(d.dirPath), Data: data}}, "file " + d.dirPath, nil
		}
		src, err := dir.New(dir.Options{Dir: d.dirPath}, nil)
		if err != nil {
			return nil, "", err
		}
		rev, err := src.Fetch(ctx, "")
		if err != nil {
			return nil, "", err
		}
		return rev.Files, "directory " + d.dirPath, nil
	}
	ref := d.ref
	if ref == "" {
		ref = "HEAD"
	}
	rev, err := git.ReadRevision(d.repo, ref, d.path)
	if err != nil {
		return nil, "", err
	}
	return rev.Files, fmt.Sprintf("%s (%s)", ref, shortRev(rev.ID)), nil
}

// filePrefix is what makes the target's file names readable in errors:
// relative to the repository's root, or the directory as given.
func (d *differ) filePrefix() string {
	if d.dirPath != "" {
		if fi, err := os.Stat(d.dirPath); err == nil && !fi.IsDir() {
			return filepath.ToSlash(filepath.Dir(d.dirPath))
		}
		return filepath.ToSlash(d.dirPath)
	}
	return d.path
}

// loadFiles validates files, naming them under prefix in errors.
func loadFiles(files []manifests.File, prefix string) ([]manifests.Object, error) {
	if prefix != "" && prefix != "." {
		files = slices.Clone(files)
		for i := range files {
			files[i].Path = path.Join(prefix, files[i].Path)
		}
	}
	return sops.LoadSecrets(schema.Load, nil)(files)
}

// validationLines turns a load error into its lines, or returns it when it
// is not a validation error.
func validationLines(err error) ([]string, error) {
	var el *schema.ErrorList
	if !errors.As(err, &el) {
		return nil, err
	}
	lines := make([]string, len(el.Errors))
	for i, e := range el.Errors {
		lines[i] = e.Error()
	}
	return lines, nil
}

// sourceObject reads the Source object of a source, nil when absent.
func sourceObject(ctx context.Context, objects bus.Store, name string) (*manifests.Source, error) {
	obj, _, err := cache.GetObject(ctx, objects, manifests.Key("Source", "", name))
	if errors.Is(err, bus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read source %s: %w", name, err)
	}
	src, ok := obj.(*manifests.Source)
	if !ok {
		return nil, fmt.Errorf("read source %s: not a Source", name)
	}
	return src, nil
}

// clusterObjects lists the objects of the kinds Git declares: those the
// source declared, and the owner of every other key (another source's
// name, or "" for a controller's object).
func clusterObjects(ctx context.Context, objects bus.Store, source string) ([]manifests.Object, map[string]string, error) {
	var mine []manifests.Object
	others := map[string]string{}
	for _, k := range manifests.Kinds() {
		if !k.FromGit {
			continue
		}
		entries, err := objects.List(ctx, k.Kind+".>")
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", k.Kind, err)
		}
		for _, e := range entries {
			obj, err := manifests.Decode(e.Value)
			if err != nil {
				continue
			}
			if owner := obj.GetObjectMeta().Annotations[manifests.AnnotationSource]; owner == source {
				mine = append(mine, obj)
			} else {
				others[e.Key] = owner
			}
		}
	}
	return mine, others, nil
}

// diffObjects plans declared (the target) against current (the base, the
// objects the source holds now), as the sync would apply it
// (ownership.MakePlan); a Secret's changed values are hidden.
func diffObjects(declared, current []manifests.Object, others map[string]string, source string, policy *manifests.DriftPolicy) ([]objChange, []string, error) {
	p, err := ownership.MakePlan(ownership.PlanInput{Declared: declared, Live: current, Others: others, Source: source,
		Policy: policy, Comparable: comparableSecret})
	if err != nil {
		return nil, nil, err
	}
	for i := range p.Changes {
		p.Changes[i].Fields = hideSecretFields(p.Changes[i].Kind, p.Changes[i].Fields)
	}
	return p.Changes, p.Conflicts, nil
}

// summary counts the changes by action: "1 created, 2 updated".
func (r *diffReport) summary() string {
	var parts []string
	for _, a := range []string{"created", "updated", "deleted", "kept"} {
		n := 0
		for _, c := range r.Changes {
			if c.Action == a {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, a))
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// shownValue is a field's value for a reader: its JSON, cut when long.
func shownValue(v string) string {
	if v == "" {
		return "(none)"
	}
	const limit = 120
	if utf8.RuneCountInString(v) > limit {
		r := []rune(v)
		return string(r[:limit]) + "…"
	}
	return v
}

var diffMarks = map[string]string{"created": "+", "updated": "~", "deleted": "-", "kept": "="}

func writeDiffText(w io.Writer, r *diffReport) error {
	ew := &errWriter{w: w}
	if len(r.BaseErrors) > 0 {
		ew.printf("The base %s does not validate (%s):\n", r.Base, plural(len(r.BaseErrors), "error", "errors"))
		for _, e := range r.BaseErrors {
			ew.printf("  %s\n", e)
		}
		return ew.err
	}
	ew.printf("Comparing %s with %s\n", r.Target, r.Base)
	for _, c := range r.Changes {
		ew.printf("%s %s %s %s", diffMarks[c.Action], c.Kind, manifests.JoinName(c.Namespace, c.Name), c.Action)
		if c.Action == "kept" {
			ew.printf(" (%s: %s)", gitops.AnnotationPrune, gitops.PruneDisabled)
		}
		ew.printf("\n")
		for _, f := range c.Fields {
			ew.printf("    %s: %s -> %s\n", f.Path, shownValue(f.Old), shownValue(f.New))
		}
	}
	if len(r.Errors) > 0 {
		ew.printf("%s:\n", plural(len(r.Errors), "error", "errors"))
		for _, e := range r.Errors {
			ew.printf("  %s\n", e)
		}
	}
	switch {
	case len(r.Changes) > 0:
		ew.printf("%s: %s\n", plural(len(r.Changes), "change", "changes"), r.summary())
	case len(r.Errors) == 0:
		ew.printf("No changes.\n")
	}
	return ew.err
}

// maxMarkdownDetails bounds the <details> block, so a comment stays under
// the forges' limits (GitHub: 65,536 characters).
const maxMarkdownDetails = 50000

func writeDiffMarkdown(w io.Writer, r *diffReport) error {
	ew := &errWriter{w: w}
	switch {
	case len(r.BaseErrors) > 0:
		ew.printf("### Capstan diff: the base does not validate\n\n")
		ew.printf("The base %s has %s:\n\n", mdCode(r.Base), plural(len(r.BaseErrors), "validation error", "validation errors"))
		writeMarkdownBlock(ew, "text", strings.Join(r.BaseErrors, "\n"))
		return ew.err
	case len(r.Errors) > 0:
		ew.printf("### Capstan diff: %s\n\n", plural(len(r.Errors), "error", "errors"))
	case len(r.Changes) > 0:
		ew.printf("### Capstan diff: %s\n\n", plural(len(r.Changes), "change", "changes"))
	default:
		ew.printf("### Capstan diff: no changes\n\n")
	}
	ew.printf("Comparing %s with %s", mdCode(r.Target), r.Base)
	if len(r.Changes) > 0 {
		ew.printf(": %s", r.summary())
	}
	ew.printf(".\n\n")
	if len(r.Changes) > 0 {
		ew.printf("| Action | Kind | Namespace | Name | Fields |\n| --- | --- | --- | --- | --- |\n")
		for _, c := range r.Changes {
			var fields []string
			for _, f := range c.Fields {
				fields = append(fields, "`"+mdCell(f.Path)+"`")
			}
			ew.printf("| %s | %s | %s | %s | %s |\n", c.Action, c.Kind, mdCell(c.Namespace), mdCell(c.Name), strings.Join(fields, ", "))
		}
		ew.printf("\n")
		var details strings.Builder
		for _, c := range r.Changes {
			if len(c.Fields) == 0 {
				continue
			}
			fmt.Fprintf(&details, "%s %s\n", c.Kind, manifests.JoinName(c.Namespace, c.Name))
			for _, f := range c.Fields {
				if f.Old != "" {
					fmt.Fprintf(&details, "- %s: %s\n", f.Path, shownValue(f.Old))
				}
				if f.New != "" {
					fmt.Fprintf(&details, "+ %s: %s\n", f.Path, shownValue(f.New))
				}
			}
		}
		if details.Len() > 0 {
			text := details.String()
			if len(text) > maxMarkdownDetails {
				cut := strings.LastIndex(text[:maxMarkdownDetails], "\n")
				text = text[:cut+1] + "… (truncated)\n"
			}
			ew.printf("<details><summary>Field changes</summary>\n\n")
			writeMarkdownBlock(ew, "diff", strings.TrimSuffix(text, "\n"))
			ew.printf("\n</details>\n")
		}
	}
	if len(r.Errors) > 0 {
		if len(r.Changes) > 0 {
			ew.printf("\n")
		}
		ew.printf("Errors:\n\n")
		writeMarkdownBlock(ew, "text", strings.Join(r.Errors, "\n"))
	}
	return ew.err
}

// writeMarkdownBlock writes a fenced code block whose fence is longer than
// any run of backticks in text, so text cannot close it.
func writeMarkdownBlock(ew *errWriter, lang, text string) {
	longest, run := 0, 0
	for _, c := range text {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	ew.printf("%s%s\n%s\n%s\n", fence, lang, text, fence)
}

// mdCode is s as inline code.
func mdCode(s string) string {
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// mdCell escapes what would end a table cell or break its line.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// errWriter keeps the first write error, so formatting code reads straight.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
