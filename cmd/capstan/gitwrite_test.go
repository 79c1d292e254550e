//go:build !nodeonly

package main

import (
	"log/slog"
	"strings"
	"testing"
)

// TestGitWriteRequestRefused: the control plane's commit writer refuses a
// malformed request by its fault, before reading anything.
func TestGitWriteRequestRefused(t *testing.T) {
	w := &gitWriter{Log: slog.New(slog.DiscardHandler)} // no bus: nothing may be read
	cases := map[string]string{
		`{"kind":"Deployment","name":"web","replicas":2,"author":"A <a@example.com>","content":"x"}`: `unknown field "content"`,
		`{"kind":"Deployment","name":"web","author":"A <a@example.com>"}`:                            "exactly one of replicas and undo",
		`{"kind":"Deployment","name":"web","replicas":2,"undo":true,"author":"A <a@example.com>"}`:   "exactly one of replicas and undo",
		`{"kind":"Deployment","name":"web","replicas":-1,"author":"A <a@example.com>"}`:              "replicas -1",
		`{"kind":"Pod","name":"web","replicas":2,"author":"A <a@example.com>"}`:                      "cannot scale a Pod",
		`{"kind":"StatefulSet","name":"web","undo":true,"author":"A <a@example.com>"}`:               "cannot roll back a StatefulSet",
		`{"kind":"Deployment","name":"web","replicas":2,"author":"nobody"}`:                          `author "nobody"`,
		`{"kind":"Deployment","replicas":2,"author":"A <a@example.com>"}`:                            "no object name",
		`not json`: "bad request",
	}
	for body, want := range cases {
		rep := w.handle(t.Context(), []byte(body), "")
		if !strings.Contains(rep.Error, want) || !strings.HasPrefix(rep.Error, "bad request: ") || rep.Commit != "" {
			t.Errorf("%s: reply %+v, want an error with %q", body, rep, want)
		}
	}
}
