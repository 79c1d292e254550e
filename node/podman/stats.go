//go:build remote

package podman

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"

	"github.com/capstan-io/capstan/node"
)

// Stats takes one sample (stream false) of the given running containers'
// CPU time and memory use. A container that is not running is left out of
// the result; asking for none returns an empty map without a call.
func (r *Runtime) Stats(ctx context.Context, ids []string) (map[string]node.ContainerStats, error) {
	out := make(map[string]node.ContainerStats, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ch, err := containers.Stats(r.bind(ctx), ids, new(containers.StatsOptions).WithStream(false))
	if err != nil {
		return nil, fmt.Errorf("stats: %w", apiErr(err))
	}
	// Stream false: the bindings send exactly one report and close.
	now := time.Now()
	for rep := range ch {
		if rep.Error != nil {
			if errors.Is(ctx.Err(), context.Canceled) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("stats: %w", ctx.Err())
			}
			return nil, fmt.Errorf("stats: %w", apiErr(rep.Error))
		}
		for _, s := range rep.Stats {
			out[s.ContainerID] = node.ContainerStats{CPUNanos: s.CPUNano, MemoryBytes: s.MemUsage, Time: now}
		}
	}
	return out, nil
}
