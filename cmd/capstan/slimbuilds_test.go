//go:build !nodeonly

package main

import (
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// notOnNodes are the packages the nodeonly build (bin/capstan-node) must
// not link: the control plane, the sources, and what they bring (CUE,
// go-git, the SOPS codec). Each added a share of the node daemon's
// resident size (docs/ARCHITECTURE.md, docs/BENCHMARKS.md).
var notOnNodes = []string{
	"github.com/capstan-io/capstan/reconciler",
	"github.com/capstan-io/capstan/schema",
	"github.com/capstan-io/capstan/sources",
	"cuelang.org/go/",
	"github.com/go-git/go-git/",
}

// notOnServers are the packages the serveronly build (bin/capstan-server)
// must not link: the Podman runtime and the containers libraries under
// it, two fifths of the default build's resident file pages.
var notOnServers = []string{
	"github.com/capstan-io/capstan/node/podman",
	"github.com/containers/",
}

// notInAnyBuild are what neither build may link: the sops library and the
// clients of the cloud key services it brings for every key type
// (docs/BENCHMARKS.md), although Capstan uses age keys only.
// bus/secrets/sops speaks the SOPS format with age alone.
var notInAnyBuild = []string{
	"github.com/getsops/",
	"github.com/aws/",
	"cloud.google.com/go/",
	"github.com/Azure/",
	"github.com/hashicorp/vault/",
	"github.com/huaweicloud/",
}

// TestSlimBuildsDeps lists the dependencies of the nodeonly and
// serveronly builds with go list (no compile) and fails on any of
// notOnNodes and notOnServers; the default build must still have them,
// so the check cannot pass by listing nothing.
func TestSlimBuildsDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	tags := buildTags(t)
	deps := func(tags string) []string {
		out, err := exec.Command(goBin, "list", "-deps", "-tags", tags, ".").Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go list -deps -tags %q: %v\n%s", tags, err, stderr)
		}
		return strings.Fields(string(out))
	}
	forbidden := func(pkgs []string, lists ...[]string) []string {
		var bad []string
		for _, p := range pkgs {
			if slices.ContainsFunc(slices.Concat(lists...), func(n string) bool { return p == n || strings.HasPrefix(p, n) }) {
				bad = append(bad, p)
			}
		}
		return bad
	}
	for _, b := range []struct {
		name, tag string
		not       [][]string // lists of what it must not link
		want      []string   // what it must link, so the check sees something
	}{
		{"nodeonly", "nodeonly", [][]string{notOnNodes, notInAnyBuild}, []string{"github.com/capstan-io/capstan/node", "github.com/capstan-io/capstan/node/podman", "github.com/capstan-io/capstan/node/dataplane"}},
		{"serveronly", "serveronly", [][]string{notOnServers, notInAnyBuild}, []string{"github.com/capstan-io/capstan/reconciler/controllers", "github.com/capstan-io/capstan/sources/git", "github.com/nats-io/nats-server/v2/server"}},
		{"default", "", [][]string{notInAnyBuild}, []string{"github.com/capstan-io/capstan/reconciler/controllers", "github.com/capstan-io/capstan/schema", "github.com/capstan-io/capstan/sources/git", "github.com/capstan-io/capstan/bus/secrets/sops", "filippo.io/age", "github.com/capstan-io/capstan/node/podman"}},
	} {
		pkgs := deps(strings.TrimSpace(tags + " " + b.tag))
		if bad := forbidden(pkgs, b.not...); len(bad) > 0 {
			t.Errorf("the %s build links %d packages it must not, among them: %s", b.name, len(bad), strings.Join(bad[:min(len(bad), 10)], ", "))
		}
		for _, want := range b.want {
			if !slices.Contains(pkgs, want) {
				t.Errorf("the %s build lacks %s", b.name, want)
			}
		}
	}
}

// buildTags returns the -tags this test binary was built with (the Podman
// bindings' tags), so go list sees the same files.
func buildTags(t *testing.T) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build info")
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			return strings.ReplaceAll(s.Value, ",", " ")
		}
	}
	return ""
}
