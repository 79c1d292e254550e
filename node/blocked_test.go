package node

import (
	"context"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// A pod whose sync stopped at a missing ConfigMap is reported at once,
// even while its next sync is under way, and the end of that sync does
// not start another relist (which retried it back to back).
func TestBlockedPodReportsAndDoesNotSpin(t *testing.T) {
	t.Parallel()
	d := &Daemon{Name: "n1"}
	d.defaults()
	pod := &manifests.Pod{}
	pod.Name, pod.Namespace, pod.UID = "p", "default", "uid-1"
	pod.Spec.Containers = []manifests.Container{{Name: "main", Image: "img",
		EnvFrom: []manifests.EnvFromSource{{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "missing"}}}}}

	now := time.Now()
	d.inflight[pod.UID] = now
	if !d.startingQuietly(pod.UID, now) {
		t.Fatal("a new pod's first report does not wait for its start")
	}
	delete(d.inflight, pod.UID)
	d.quiet[pod.UID].Stop()
	delete(d.quiet, pod.UID)

	d.syncPod(context.Background(), pod, nil)
	if got := d.waitingReason(pod.UID, "main"); got != reasonConfigError {
		t.Fatalf("waiting reason %q, want %s", got, reasonConfigError)
	}
	d.inflight[pod.UID] = time.Now()
	if d.startingQuietly(pod.UID, time.Now()) {
		t.Error("a pod waiting for its ConfigMap held back its report while a sync ran")
	}
	delete(d.inflight, pod.UID)

	done := make(chan struct{})
	d.spawn(context.Background(), pod.UID, func(ctx context.Context) { d.syncPod(ctx, pod, nil); close(done) })
	<-done
	d.wg.Wait()
	select {
	case <-d.trigger:
		t.Error("a sync stopped at a missing ConfigMap poked another relist")
	default:
	}
}
