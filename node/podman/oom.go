//go:build remote

package podman

import (
	"time"

	"github.com/containers/podman/v5/libpod/define"
)

// Podman 4.3 with runc on a cgroup v1 host does not report OOMKilled:
// conmon's OOM detection never fires there, and a container killed by the
// kernel for exceeding its memory limit shows only exit code 137. Without
// the flag Kubernetes' OOMKilled reason would never appear, so the adapter
// infers it: an exit by SIGKILL of a container with a memory limit that
// this Runtime did not stop is taken for an OOM kill. The one case it gets
// wrong is a process of the container killed with SIGKILL from elsewhere
// (or a container this Runtime stopped before a restart of the process
// that made it, which ignored SIGTERM).

// exitSIGKILL is the exit code of a process ended by SIGKILL.
const exitSIGKILL = 128 + 9

// stoppedTTL is how long a stop is remembered: long past any grace period.
const stoppedTTL = time.Hour

// stopping records that this Runtime stops (and may kill) a container.
func (r *Runtime) stopping(id string) {
	now := time.Now()
	r.stopped.Store(id, now)
	r.stopped.Range(func(k, v any) bool {
		if now.Sub(v.(time.Time)) > stoppedTTL {
			r.stopped.Delete(k)
		}
		return true
	})
}

// likelyOOM infers an OOM kill Podman did not report (see above).
func (r *Runtime) likelyOOM(id string, exitCode int32, hc *define.InspectContainerHostConfig) bool {
	if exitCode != exitSIGKILL || hc == nil || hc.Memory <= 0 {
		return false
	}
	_, stopped := r.stopped.Load(id)
	return !stopped
}
