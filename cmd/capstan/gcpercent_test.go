//go:build !nodeonly

package main

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"
)

// The control plane sets its collector's GOGC to --gc-percent (50 by
// default), unless the flag is left alone and GOGC is in the environment.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	current := func() int {
		v := debug.SetGCPercent(100)
		debug.SetGCPercent(v)
		return v
	}
	for _, c := range []struct {
		name, env string
		args      []string
		want      int
	}{
		{"default", "", nil, defaultGCPercent},
		{"the environment's GOGC", "80", nil, 100}, // left as the runtime set it (100 here)
		{"the flag over the environment", "80", []string{"--gc-percent=30"}, 30},
		{"the flag", "", []string{"--gc-percent=70"}, 70},
	} {
		debug.SetGCPercent(100)
		t.Setenv("GOGC", c.env)
		f := &stackFlags{}
		cmd := &cobra.Command{Use: "server"}
		f.busFlags(cmd)
		if err := cmd.ParseFlags(c.args); err != nil {
			t.Fatal(err)
		}
		f.setGCPercent(cmd, slog.New(slog.DiscardHandler))
		if got := current(); got != c.want {
			t.Errorf("%s: GOGC %d, want %d", c.name, got, c.want)
		}
	}
}
