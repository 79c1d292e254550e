package fake

import (
	"context"

	"github.com/capstan-io/capstan/node"
)

// SetStats sets what Stats reports for a container, by its configured name
// (node.ContainerConfig.Name); its Time is set by Stats. Containers without
// a value report zero use.
func (r *Runtime) SetStats(name string, s node.ContainerStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stats == nil {
		r.stats = map[string]node.ContainerStats{}
	}
	r.stats[name] = s
}

// Stats reports the values set with SetStats for the running containers
// among ids; others are left out.
func (r *Runtime) Stats(ctx context.Context, ids []string) (map[string]node.ContainerStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.Now()
	out := make(map[string]node.ContainerStats, len(ids))
	for _, id := range ids {
		c, ok := r.ctrs[id]
		if !ok || c.state != node.StateRunning {
			continue
		}
		s := r.stats[c.cfg.Name]
		s.Time = now
		out[id] = s
	}
	return out, nil
}
