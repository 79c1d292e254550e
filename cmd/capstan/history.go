//go:build !nodeonly

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// objectRef names one object: `history deployment/web`.
type objectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// parseObjectRef reads KIND/NAME (any of the kind's names, as `get` takes
// them); ns is the --namespace flag.
func parseObjectRef(arg, ns string) (*objectRef, error) {
	k, name, err := resolveKind(arg)
	if err != nil {
		return nil, err
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, exitError{code: 1, msg: fmt.Sprintf("error: want KIND/NAME, such as deployment/web; got %q", arg)}
	}
	return &objectRef{Kind: k.Kind, Namespace: nsFor(k, ns), Name: name}, nil
}

// objectChangeRecord is one applied change of one object, with the sync
// attempt (or the action: a drift removal, a write-back) that made it.
type objectChangeRecord struct {
	Time *manifests.Time `json:"time"`
	// RecordAction and Actor are the record's (manifests.AuditRecord).
	RecordAction string          `json:"recordAction,omitempty"`
	Actor        string          `json:"actor,omitempty"`
	Source       string          `json:"source"`
	Revision     string          `json:"revision"`
	Author       string          `json:"author,omitempty"`
	Committer    string          `json:"committer,omitempty"`
	Message      string          `json:"message,omitempty"`
	CommitAt     *manifests.Time `json:"commitTime,omitempty"`
	Result       string          `json:"result"`
	Action       string          `json:"action"` // created, updated, deleted, kept
	Fields       []string        `json:"fields,omitempty"`
}

// objectHistory picks the changes of one object out of the audit records,
// oldest first. A Failed attempt's changes are included: they were applied
// before the attempt stopped.
func objectHistory(recs []manifests.AuditRecord, ref objectRef) []objectChangeRecord {
	var out []objectChangeRecord
	for _, r := range recs {
		for _, c := range r.Changes {
			if c.Kind != ref.Kind || c.Namespace != ref.Namespace || c.Name != ref.Name {
				continue
			}
			out = append(out, objectChangeRecord{Time: r.Time, RecordAction: r.Action, Actor: r.Actor, Source: r.Source, Revision: r.Revision, Author: r.Author,
				Committer: r.Committer, Message: r.Message, CommitAt: r.CommitAt, Result: r.Result, Action: c.Action, Fields: c.Fields})
		}
	}
	return out
}

func printObjectHistory(w io.Writer, ref objectRef, changes []objectChangeRecord, output string) error {
	if output == "json" {
		if changes == nil {
			changes = []objectChangeRecord{}
		}
		b, err := json.MarshalIndent(map[string]any{"object": ref, "items": changes}, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	what := strings.ToLower(ref.Kind) + "/" + ref.Name
	if ref.Namespace != "" {
		what += " in namespace " + ref.Namespace
	}
	if len(changes) == 0 {
		_, err := fmt.Fprintf(w, "No changes of %s recorded.\n", what)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREVISION\tRESULT\tACTION\tAUTHOR\tACTOR\tMESSAGE\tFIELDS")
	for _, c := range changes {
		msg, _, _ := strings.Cut(c.Message, "\n")
		if r := []rune(msg); len(r) > 50 {
			msg = string(r[:49]) + "…"
		}
		actor := orNone(c.Actor)
		if a := c.RecordAction; a != "" && a != manifests.ActionSync {
			actor += " (" + a + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Time.Format(time.RFC3339), shortRev(c.Revision), c.Result, c.Action,
			orNone(c.Author), actor, orNone(msg), strings.Join(c.Fields, ", "))
	}
	return tw.Flush()
}

// recordHeader is a record's first line in `capstan history`: time,
// source, revision, result, then the commit's author for a sync, or the
// action and who did it.
func recordHeader(r manifests.AuditRecord) string {
	line := fmt.Sprintf("%s  %s  %s  %s  ", r.Time.Format(time.RFC3339), orNone(r.Source), shortRev(r.Revision), r.Result)
	if r.IsSync() {
		return line + r.Author
	}
	line += r.Action + " by " + orNone(r.Actor)
	if r.Subject != "" {
		line += " for " + r.Subject
	}
	return line
}
