//go:build !nodeonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/atrest"
	"github.com/capstan-io/capstan/manifests"
)

// Secret values are encrypted at rest in the objects bucket (bus/secrets/atrest):
// the CLI reads them only from the control plane (capstan.secrets.reveal),
// which the bus lets admins alone ask. Anyone else sees that a Secret and
// its keys exist, with every value hidden.

// hiddenValue stands for a value the CLI does not show.
const hiddenValue = "(hidden)"

// adminsOnlyNote is told on stderr when values are hidden.
const adminsOnlyNote = "note: Secret values are shown to admins only (capstan.secrets.reveal); they are hidden here"

func secretRotateKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key",
		Short: "Rotate the key that encrypts Secret values at rest (admins)",
		Long: `Ask the control plane to make a new key current in its key file
(<data-dir>/secrets.key), re-encrypt every Secret in the objects bucket with
it and then drop the old keys, once no stored value uses them. A Secret's
plain text does not change, so no assignment is rewritten and no pod
restarts. Only admins may ask (the bus refuses anyone else).`,
		Example: "  capstan secrets rotate-key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			res, err := atrest.RequestRotate(cmd.Context(), conn.NC)
			switch {
			case errors.Is(err, atrest.ErrRefused):
				return exitError{code: 1, msg: "error: the bus refused the rotation: only admins may rotate the key, and a control plane must be running (" + err.Error() + ")"}
			case err != nil:
				return exitError{code: 1, msg: "error: rotate the secrets key: " + err.Error()}
			}
			fmt.Fprintf(g.stdout, "secrets key rotated: %s is current; %d Secret(s) re-encrypted\n", res.Key, res.Reencrypted)
			if len(res.Dropped) > 0 {
				fmt.Fprintf(g.stdout, "old keys dropped: %s\n", strings.Join(res.Dropped, ", "))
			}
			if len(res.Kept) > 0 {
				fmt.Fprintf(g.stdout, "old keys kept, still used by values that do not decrypt: %s\n", strings.Join(res.Kept, ", "))
			}
			if len(res.Unreadable) > 0 {
				fmt.Fprintf(g.stdout, "left for the sync to write again from Git (a value no key opens): %s\n", strings.Join(res.Unreadable, ", "))
			}
			return nil
		},
	}
}

// hiddenSecret prints a Secret with its values hidden.
type hiddenSecret struct{ *manifests.Secret }

func (h hiddenSecret) MarshalJSON() ([]byte, error) {
	s := *h.Secret
	data, stringData := s.Data, s.StringData
	s.Data, s.StringData = nil, nil
	b, err := json.Marshal(&s)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for field, keys := range map[string][]string{"data": slices.Collect(maps.Keys(data)), "stringData": slices.Collect(maps.Keys(stringData))} {
		if len(keys) == 0 {
			continue
		}
		hidden := make(map[string]string, len(keys))
		for _, k := range keys {
			hidden[k] = hiddenValue
		}
		if m[field], err = json.Marshal(hidden); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

// shownObject is obj as describe prints it: a Secret's values hidden.
func shownObject(obj manifests.Object) manifests.Object {
	if s, ok := obj.(*manifests.Secret); ok {
		return hiddenSecret{s}
	}
	return obj
}

// secretValues returns the Secrets of objs with their values, as the
// control plane reveals them; when it refuses (not an admin, no control
// plane), with every value hidden and a note on stderr.
func (g *globals) secretValues(ctx context.Context, conn *natsbus.Conn, objs []manifests.Object) []manifests.Object {
	if len(objs) == 0 {
		return objs
	}
	revealed, err := revealFor(ctx, conn, objs)
	out := make([]manifests.Object, len(objs))
	hidden := 0
	for i, o := range objs {
		if s, ok := revealed[manifests.KeyOf(o)]; ok {
			out[i] = s
			continue
		}
		out[i] = shownObject(o)
		hidden++
	}
	switch {
	case err != nil:
		fmt.Fprintf(g.stderr, "%s (%v)\n", adminsOnlyNote, err)
	case hidden > 0:
		fmt.Fprintf(g.stderr, "%s (%d not found by the control plane)\n", adminsOnlyNote, hidden)
	}
	return out
}

// revealFor asks the control plane for the Secrets of objs, by key: one
// request, for the one Secret, its namespace's or all.
func revealFor(ctx context.Context, conn *natsbus.Conn, objs []manifests.Object) (map[string]*manifests.Secret, error) {
	req := atrest.RevealRequest{}
	if m := objs[0].GetObjectMeta(); len(objs) == 1 {
		req = atrest.RevealRequest{Namespace: m.Namespace, Name: m.Name}
	} else if !slices.ContainsFunc(objs, func(o manifests.Object) bool { return o.GetObjectMeta().Namespace != m.Namespace }) {
		req.Namespace = m.Namespace
	}
	secrets, err := atrest.Reveal(ctx, conn.NC, req)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*manifests.Secret, len(secrets))
	for _, s := range secrets {
		manifests.SetKind(s)
		out[manifests.KeyOf(s)] = s
	}
	return out, nil
}

// clusterSecretValues gives capstan diff the values of the cluster's
// Secrets that are encrypted at rest, from the control plane; when it
// refuses, they stay ciphertext (comparableSecret then leaves them out of
// the comparison) and a note says so.
func (g *globals) clusterSecretValues(ctx context.Context, conn *natsbus.Conn, current []manifests.Object) []manifests.Object {
	var encrypted []manifests.Object
	for _, o := range current {
		if s, ok := o.(*manifests.Secret); ok && encryptedValues(s) {
			encrypted = append(encrypted, o)
		}
	}
	if len(encrypted) == 0 {
		return current
	}
	revealed, err := revealFor(ctx, conn, encrypted)
	if err != nil {
		fmt.Fprintf(g.stderr, "note: the values of %d Secret(s) on the cluster are not compared: they are shown to admins only (%v)\n", len(encrypted), err)
		return current
	}
	out := slices.Clone(current)
	for i, o := range out {
		if s, ok := revealed[manifests.KeyOf(o)]; ok && slices.Contains(encrypted, o) {
			s.ResourceVersion = ""
			out[i] = s
		}
	}
	return out
}

func encryptedValues(s *manifests.Secret) bool {
	for _, v := range s.Data {
		if atrest.IsCiphertext(v) {
			return true
		}
	}
	for _, v := range s.StringData {
		if atrest.IsCiphertext([]byte(v)) {
			return true
		}
	}
	return false
}

// comparableSecret prepares a declared Secret and the cluster's for
// capstan diff: a value the CLI could not read (ciphertext) counts as the
// declared one, so only keys added or removed show.
func comparableSecret(declared, cur manifests.Object) manifests.Object {
	d, ok1 := declared.(*manifests.Secret)
	c, ok2 := cur.(*manifests.Secret)
	if !ok1 || !ok2 || !encryptedValues(c) {
		return cur
	}
	out := *c
	out.Data = maps.Clone(c.Data)
	for k, v := range out.Data {
		if dv, ok := d.Data[k]; ok && atrest.IsCiphertext(v) {
			out.Data[k] = dv
		}
	}
	out.StringData = maps.Clone(c.StringData)
	for k, v := range out.StringData {
		if dv, ok := d.StringData[k]; ok && atrest.IsCiphertext([]byte(v)) {
			out.StringData[k] = dv
		}
	}
	return &out
}

// hideSecretFields hides the values of a Secret's changed fields: the
// diff says which keys change, never to what (it goes to CI logs and pull
// requests).
func hideSecretFields(kind string, fields []fieldChange) []fieldChange {
	if kind != "Secret" {
		return fields
	}
	for i, f := range fields {
		for _, p := range []string{"data", "stringData"} {
			if f.Path == p || strings.HasPrefix(f.Path, p+".") || strings.HasPrefix(f.Path, p+"[") {
				if f.Old != "" {
					fields[i].Old = `"` + hiddenValue + `"`
				}
				if f.New != "" {
					fields[i].New = `"` + hiddenValue + `"`
				}
			}
		}
	}
	return fields
}
