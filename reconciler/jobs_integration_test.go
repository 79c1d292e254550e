package reconciler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// The Job, CronJob and HorizontalPodAutoscaler controllers against a real
// in-process NATS server and fake-runtime node daemons. The objects are
// written straight to the bus (the controllers do not care where an object
// comes from); the autoscaler test declares its Deployment in Git, to check
// that the sync leaves an autoscaled replica count alone.

// startBatchCluster starts a cluster whose Git repository declares only a
// ConfigMap, and one node.
func startBatchCluster(t *testing.T) *cluster {
	c := startBusCluster(t)
	c.addQuietNode("n1")
	return c
}

// addQuietNode starts a node that measures no usage (so a test's usage
// reports are not overwritten).
func (c *cluster) addQuietNode(name string) *fake.Runtime {
	return c.startNode(name, []string{"img:1"}, time.Hour)
}

// update reads key, applies fn and writes it back, retrying lost races.
func (c *cluster) updateObj(key string, fn func(manifests.Object)) {
	c.t.Helper()
	for range 10 {
		obj, rev, err := cache.GetObject(c.ctx, c.conn.Objects, key)
		if err != nil {
			c.t.Fatal(err)
		}
		fn(obj)
		if _, err = cache.UpdateObject(c.ctx, c.conn.Objects, obj, rev); err == nil {
			return
		} else if !errors.Is(err, bus.ErrConflict) {
			c.t.Fatal(err)
		}
	}
	c.t.Fatalf("update %s: too many conflicts", key)
}

func (c *cluster) job(name string) (*manifests.Job, error) {
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Job", "default", name))
	if err != nil {
		return nil, err
	}
	return obj.(*manifests.Job), nil
}

// list returns the objects of a kind in the default namespace.
func (c *cluster) list(kind string) []manifests.Object {
	entries, err := c.conn.Objects.List(c.ctx, kind+".default.>")
	if err != nil {
		c.t.Fatal(err)
	}
	var out []manifests.Object
	for _, e := range entries {
		obj, err := manifests.Decode(e.Value)
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, obj)
	}
	return out
}

// jobPods returns the pods of a Job, by its label.
func (c *cluster) jobPods(job string) []*manifests.Pod {
	var out []*manifests.Pod
	for _, o := range c.list("Pod") {
		if p := o.(*manifests.Pod); p.Labels[controllers.LabelJobName] == job {
			out = append(out, p)
		}
	}
	return out
}

func condition(conds []manifests.Condition, typ string) string {
	if c := manifests.FindCondition(conds, typ); c != nil {
		return c.Status + "/" + c.Reason
	}
	return ""
}

func newJob(name string, completions, parallelism *int32, policy, script string) *manifests.Job {
	return &manifests.Job{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.JobSpec{
			Completions: completions,
			Parallelism: parallelism,
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: manifests.PodSpec{
					RestartPolicy: policy,
					Containers:    []manifests.Container{{Name: "main", Image: "img:1", Command: []string{"sh", "-c", script}}},
				},
			},
		},
	}
}

// watchActive records the highest number of a Job's pods that were active
// (not finished) at once, from every change of the objects bucket.
func (c *cluster) watchActive(job string) func() int {
	ctx, cancel := context.WithCancel(c.ctx)
	c.t.Cleanup(cancel)
	ch, err := c.conn.Objects.Watch(ctx, "Pod.default.>")
	if err != nil {
		c.t.Fatal(err)
	}
	var mu sync.Mutex
	peak := 0
	go func() {
		active := map[string]bool{}
		for e := range ch {
			switch e.Op {
			case bus.OpDelete:
				delete(active, e.Key)
			case bus.OpPut:
				obj, err := manifests.Decode(e.Value)
				if err != nil {
					continue
				}
				p := obj.(*manifests.Pod)
				if p.Labels[controllers.LabelJobName] != job {
					continue
				}
				if manifests.IsPodTerminal(p) {
					delete(active, e.Key)
				} else {
					active[e.Key] = true
				}
			}
			mu.Lock()
			peak = max(peak, len(active))
			mu.Unlock()
		}
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func TestJobCompletesWithParallelism(t *testing.T) {
	t.Parallel()
	c := startBatchCluster(t)
	peak := c.watchActive("batch")
	c.create(newJob("batch", manifests.Ptr(int32(3)), manifests.Ptr(int32(2)), manifests.RestartNever, "echo done"))
	testwait.For(t, 20*time.Second, "job batch Complete", func() error {
		j, err := c.job("batch")
		if err != nil {
			return err
		}
		if condition(j.Status.Conditions, "Complete") != "True/" {
			return fmt.Errorf("not complete: %+v", j.Status)
		}
		if j.Status.Succeeded != 3 || j.Status.Active != 0 || j.Status.Failed != 0 || j.Status.CompletionTime == nil || j.Status.StartTime == nil {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})
	pods := c.jobPods("batch")
	if len(pods) != 3 {
		t.Fatalf("%d pods, want exactly 3", len(pods))
	}
	for _, p := range pods {
		if p.Status.Phase != manifests.PodSucceeded || p.Labels[controllers.LabelControllerUID] == "" || p.Labels["app"] != "batch" {
			t.Fatalf("pod %s: phase %s labels %v", p.Name, p.Status.Phase, p.Labels)
		}
	}
	if n := peak(); n > 2 || n == 0 {
		t.Fatalf("%d pods active at once, want at most parallelism 2", n)
	}
	c.quiet(2 * time.Second) // a finished Job writes nothing more
}

func TestJobBackoffLimitExceeded(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (a 10 s back-off): the planner's back-off is TestPlanJob and TestJobBackoff, on Podman TestE2EJobsAndCronJobs")
	}
	t.Parallel()
	c := startBatchCluster(t)
	never := newJob("fails", nil, nil, manifests.RestartNever, "echo failing; exit 3")
	never.Spec.BackoffLimit = manifests.Ptr(int32(1))
	c.create(never)
	onFailure := newJob("crashes", nil, nil, manifests.RestartOnFailure, "exit 1")
	onFailure.Spec.BackoffLimit = manifests.Ptr(int32(1))
	c.create(onFailure)

	// Never: the failed pod is replaced once, after the 10 s back-off; the
	// second failure exceeds the limit.
	begin := time.Now()
	testwait.For(t, 30*time.Second, "job fails Failed", func() error {
		j, err := c.job("fails")
		if err != nil {
			return err
		}
		if got := condition(j.Status.Conditions, "Failed"); got != "True/BackoffLimitExceeded" {
			return fmt.Errorf("failed condition %q, status %+v", got, j.Status)
		}
		if j.Status.Failed != 2 || j.Status.Succeeded != 0 || j.Status.Active != 0 {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})
	if d := time.Since(begin); d < 8*time.Second {
		t.Fatalf("the failed pod was replaced after %s, before the 10 s back-off", d)
	}
	if pods := c.jobPods("fails"); len(pods) != 2 {
		t.Fatalf("%d pods, want 2 (the first and its one replacement)", len(pods))
	}
	// OnFailure: the node restarts the container in place; one restart
	// reaches the limit, and the pod is deleted.
	testwait.For(t, 20*time.Second, "job crashes Failed", func() error {
		j, err := c.job("crashes")
		if err != nil {
			return err
		}
		if got := condition(j.Status.Conditions, "Failed"); got != "True/BackoffLimitExceeded" {
			return fmt.Errorf("failed condition %q, status %+v", got, j.Status)
		}
		if n := len(c.jobPods("crashes")); n != 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
}

func TestJobActiveDeadlineAndTTL(t *testing.T) {
	t.Parallel()
	c := startBatchCluster(t)
	slow := newJob("slow", nil, manifests.Ptr(int32(2)), manifests.RestartNever, "sleep 3600")
	slow.Spec.ActiveDeadlineSeconds = manifests.Ptr(int64(2))
	c.create(slow)
	testwait.For(t, 10*time.Second, "job slow running", func() error {
		if n := len(c.jobPods("slow")); n != 2 {
			return fmt.Errorf("%d pods running", n)
		}
		return nil
	})
	testwait.For(t, 15*time.Second, "job slow past its deadline", func() error {
		j, err := c.job("slow")
		if err != nil {
			return err
		}
		if got := condition(j.Status.Conditions, "Failed"); got != "True/DeadlineExceeded" {
			return fmt.Errorf("failed condition %q", got)
		}
		if n := len(c.jobPods("slow")); n != 0 {
			return fmt.Errorf("%d pods still there", n)
		}
		if j.Status.Active != 0 || j.Status.Failed != 2 {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})

	// ttlSecondsAfterFinished deletes a finished Job and its pods.
	short := newJob("short", nil, nil, manifests.RestartNever, "echo hi")
	short.Spec.TTLSecondsAfterFinished = manifests.Ptr(int32(1))
	c.create(short)
	// A Job that Git declares keeps its record: only its pods go.
	declared := newJob("declared", nil, nil, manifests.RestartNever, "echo hi")
	declared.Spec.TTLSecondsAfterFinished = manifests.Ptr(int32(1))
	declared.Annotations = map[string]string{manifests.AnnotationSource: "another-source"}
	c.create(declared)
	testwait.For(t, 15*time.Second, "job short deleted after its TTL", func() error {
		j, err := c.job("short")
		if err == nil {
			return fmt.Errorf("job still there: %+v", j.Status)
		}
		if !errors.Is(err, bus.ErrNotFound) {
			return err
		}
		if n := len(c.jobPods("short")); n != 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	testwait.For(t, 15*time.Second, "job declared Complete", func() error {
		j, err := c.job("declared")
		if err != nil {
			return err
		}
		if condition(j.Status.Conditions, "Complete") != "True/" || j.Status.Succeeded != 1 {
			return fmt.Errorf("status %+v", j.Status)
		}
		if n := len(c.jobPods("declared")); n != 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
}

func TestJobSuspendAndResume(t *testing.T) {
	t.Parallel()
	c := startBatchCluster(t)
	j := newJob("later", manifests.Ptr(int32(2)), manifests.Ptr(int32(2)), manifests.RestartNever, "echo hi")
	j.Spec.Suspend = manifests.Ptr(true)
	c.create(j)
	testwait.For(t, 10*time.Second, "job later Suspended", func() error {
		j, err := c.job("later")
		if err != nil {
			return err
		}
		if condition(j.Status.Conditions, "Suspended") != "True/JobSuspended" {
			return fmt.Errorf("conditions %+v", j.Status.Conditions)
		}
		return nil
	})
	testwait.Holds(t, 500*time.Millisecond, "a suspended Job runs nothing", func() error { // several resyncs: still nothing runs
		if n := len(c.jobPods("later")); n != 0 {
			return fmt.Errorf("a suspended Job made %d pods", n)
		}
		return nil
	})
	c.updateObj(manifests.Key("Job", "default", "later"), func(o manifests.Object) { o.(*manifests.Job).Spec.Suspend = manifests.Ptr(false) })
	testwait.For(t, 15*time.Second, "job later Complete after resuming", func() error {
		j, err := c.job("later")
		if err != nil {
			return err
		}
		if condition(j.Status.Conditions, "Complete") != "True/" || j.Status.Succeeded != 2 || j.Status.StartTime == nil {
			return fmt.Errorf("status %+v", j.Status)
		}
		if condition(j.Status.Conditions, "Suspended") != "False/JobResumed" {
			return fmt.Errorf("conditions %+v", j.Status.Conditions)
		}
		return nil
	})
}

func newCronJob(name, schedule, policy, script string, keep int32) *manifests.CronJob {
	j := newJob(name, nil, nil, manifests.RestartNever, script)
	return &manifests.CronJob{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"},
		Spec: manifests.CronJobSpec{
			Schedule:                   schedule,
			ConcurrencyPolicy:          policy,
			SuccessfulJobsHistoryLimit: &keep,
			JobTemplate:                manifests.JobTemplateSpec{ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"cron": name}}, Spec: j.Spec},
		},
	}
}

// cronJobs returns the names of the Jobs a CronJob made, sorted, and how
// many of them completed.
func (c *cluster) cronJobs(cron string) (names []string, complete int) {
	for _, o := range c.list("Job") {
		j := o.(*manifests.Job)
		if ref := j.Controller(); ref == nil || ref.Kind != "CronJob" || ref.Name != cron {
			continue
		}
		names = append(names, j.Name)
		if condition(j.Status.Conditions, "Complete") == "True/" {
			complete++
		}
	}
	sort.Strings(names)
	return names, complete
}

func TestCronJobMakesJobsAndKeepsHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (runs a schedule for seconds): the schedule is TestPlanCronJob, the history limits on Podman TestE2EJobsAndCronJobs")
	}
	t.Parallel()
	c := startBatchCluster(t)
	seen := map[string]bool{}
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	ch, err := c.conn.Objects.Watch(ctx, "Job.default.>")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for e := range ch {
			if e.Op == bus.OpPut {
				mu.Lock()
				seen[e.Key] = true
				mu.Unlock()
			}
		}
	}()
	c.create(newCronJob("tick", "@every 1s", "Allow", "echo tick", 2))
	testwait.For(t, 20*time.Second, "five jobs made", func() error {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n < 5 {
			return fmt.Errorf("%d jobs made so far", n)
		}
		return nil
	})
	// At most two finished Jobs are kept: a third that just finished is
	// deleted by the CronJob's next reconcile, which its finishing queues
	// (as in Kubernetes, the limit holds once the controller has seen it),
	// so more than two may show only for moments, never for half a second.
	var over time.Time // since when more than two have been kept
	testwait.Holds(t, 3*time.Second, "the CronJob's history limit", func() error {
		names, complete := c.cronJobs("tick")
		switch {
		case complete <= 2:
			over = time.Time{}
		case over.IsZero():
			over = time.Now()
		case time.Since(over) > 500*time.Millisecond:
			return fmt.Errorf("%d complete jobs kept for %s, limit 2: %v", complete, time.Since(over).Round(time.Millisecond), names)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "tick-") {
				return fmt.Errorf("job name %q", n)
			}
		}
		return nil
	})
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("CronJob", "default", "tick"))
	if err != nil {
		t.Fatal(err)
	}
	st := obj.(*manifests.CronJob).Status
	if st.LastScheduleTime == nil || st.LastSuccessfulTime == nil || time.Since(st.LastScheduleTime.Time) > 5*time.Second {
		t.Fatalf("status %+v", st)
	}
	// Suspended: no more Jobs.
	c.updateObj(manifests.Key("CronJob", "default", "tick"), func(o manifests.Object) { o.(*manifests.CronJob).Spec.Suspend = manifests.Ptr(true) })
	// A Job scheduled before the suspension may still come, or not; there
	// is no event to wait for either way, so wait until none has come for
	// longer than the schedule's second, then hold.
	before := testwait.Settles(t, 10*time.Second, 1500*time.Millisecond, "the jobs made before the suspension", func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	})
	testwait.Holds(t, 2500*time.Millisecond, "a suspended CronJob makes no jobs", func() error {
		mu.Lock()
		after := len(seen)
		mu.Unlock()
		if after != before {
			return fmt.Errorf("a suspended CronJob made %d more jobs", after-before)
		}
		return nil
	})
}

func TestCronJobConcurrencyPolicies(t *testing.T) {
	t.Parallel()
	c := startBatchCluster(t)
	c.create(newCronJob("forbid", "@every 1s", "Forbid", "sleep 3600", 3))
	c.create(newCronJob("replace", "@every 1s", "Replace", "sleep 3600", 3))
	var first []string
	testwait.For(t, 10*time.Second, "forbid's first job", func() error {
		names, _ := c.cronJobs("forbid")
		if len(names) != 1 {
			return fmt.Errorf("forbid jobs %v", names)
		}
		first = names
		return nil
	})
	var replaced []string
	testwait.For(t, 10*time.Second, "replace's first job", func() error {
		names, _ := c.cronJobs("replace")
		if len(names) != 1 {
			return fmt.Errorf("replace jobs %v", names)
		}
		if replaced == nil {
			replaced = names
		}
		if names[0] == replaced[0] {
			return fmt.Errorf("not replaced yet: %v", names)
		}
		return nil
	})
	// Forbid: the first Job still runs alone after several schedule times;
	// Replace: never more than one Job.
	testwait.Holds(t, 3*time.Second, "Forbid and Replace policies", func() error {
		if names, _ := c.cronJobs("forbid"); len(names) != 1 || names[0] != first[0] {
			return fmt.Errorf("forbid jobs %v, want only %v", names, first)
		}
		if names, _ := c.cronJobs("replace"); len(names) > 1 {
			return fmt.Errorf("replace jobs %v", names)
		}
		return nil
	})
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("CronJob", "default", "forbid"))
	if err != nil {
		t.Fatal(err)
	}
	if act := obj.(*manifests.CronJob).Status.Active; len(act) != 1 || act[0].Name != first[0] {
		t.Fatalf("active %+v", act)
	}
}

// usageWriter keeps the usage of an app's pods in their status reports at
// a per-pod CPU figure, as a node measuring them would.
func (c *cluster) usageWriter(app string, cpuMilli *atomic.Int64) {
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, p := range c.podsOf(ctx, app) {
				if p.Spec.NodeName == "" {
					continue
				}
				key := manifests.AssignmentKey(p.Spec.NodeName, p.Namespace, p.Name)
				e, err := c.conn.Status.Get(ctx, key)
				if err != nil {
					continue // the node has not reported it yet
				}
				var r manifests.PodStatusReport
				if json.Unmarshal(e.Value, &r) != nil || r.UID != p.UID {
					continue
				}
				want := cpuMilli.Load()
				if r.Usage != nil && r.Usage.CPUMilli == want && time.Since(r.Usage.Time.Time) < 30*time.Second {
					continue
				}
				r.Usage = &manifests.PodUsage{Time: manifests.Now(), CPUMilli: want, MemoryBytes: 1 << 20}
				b, _ := json.Marshal(r)
				_, _ = c.conn.Status.Update(ctx, key, b, e.Revision) // a lost race is retried next tick
			}
		}
	}()
}

func (c *cluster) podsOf(ctx context.Context, app string) []*manifests.Pod {
	entries, err := c.conn.Objects.List(ctx, "Pod.default.>")
	if err != nil {
		return nil
	}
	var out []*manifests.Pod
	for _, e := range entries {
		obj, err := manifests.Decode(e.Value)
		if err == nil && obj.(*manifests.Pod).Labels["app"] == app {
			out = append(out, obj.(*manifests.Pod))
		}
	}
	return out
}

func (c *cluster) deploymentReplicas(name string) (int32, map[string]string) {
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Deployment", "default", name))
	if err != nil {
		c.t.Fatal(err)
	}
	d := obj.(*manifests.Deployment)
	return manifests.Int32(d.Spec.Replicas, 1), d.Annotations
}

func TestHPAScalesDeploymentFromUsage(t *testing.T) {
	t.Parallel()
	const requests = "          resources:\n            requests: {cpu: 100m}\n"
	r := newRepo(t)
	r.write("web.yaml", deployment("web", 2, "img:1", requests))
	r.commit("web at 2")
	c := startCluster(t, r)
	c.addQuietNode("n1")
	c.readyPods("web", 2, "img:1", 15*time.Second)

	var load atomic.Int64
	load.Store(100) // 200% of the request, target 50%
	c.usageWriter("web", &load)
	c.create(&manifests.HorizontalPodAutoscaler{
		ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: manifests.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: manifests.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    manifests.Ptr(int32(1)),
			MaxReplicas:    5,
			Metrics: []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: "cpu",
				Target: manifests.MetricTarget{Type: "Utilization", AverageUtilization: manifests.Ptr(int32(50))}}}},
			Behavior: &manifests.HPABehavior{ScaleDown: &manifests.HPAScalingRules{StabilizationWindowSeconds: manifests.Ptr(int32(2))}},
		},
	})
	// 2 pods at 200% want 8: the scale-up rate allows 4, then max is 5.
	testwait.For(t, 30*time.Second, "the HPA scaled web", func() error {
		n, ann := c.deploymentReplicas("web")
		if n != 5 || ann[manifests.AnnotationReplicasOwner] != "web" {
			return fmt.Errorf("replicas %d, owner %q", n, ann[manifests.AnnotationReplicasOwner])
		}
		return nil
	})
	c.readyPods("web", 5, "img:1", 15*time.Second)
	testwait.For(t, 10*time.Second, "the HPA's status", func() error {
		obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("HorizontalPodAutoscaler", "default", "web"))
		if err != nil {
			return err
		}
		st := obj.(*manifests.HorizontalPodAutoscaler).Status
		if st.CurrentReplicas != 5 || st.DesiredReplicas != 5 || st.LastScaleTime == nil || st.CurrentCPUUtilizationPercentage == nil || *st.CurrentCPUUtilizationPercentage != 100 {
			return fmt.Errorf("status %+v", st)
		}
		if condition(st.Conditions, "ScalingLimited") != "True/TooManyReplicas" || condition(st.Conditions, "ScalingActive") != "True/ValidMetricFound" {
			return fmt.Errorf("conditions %+v", st.Conditions)
		}
		return nil
	})

	// Git's replica count is a starting point: a new commit and the full
	// resyncs of the sync leave the autoscaler's count alone. Every write
	// of the Deployment is watched: not one may carry another count.
	wctx, stopWatch := context.WithCancel(c.ctx)
	defer stopWatch()
	wch, err := c.conn.Objects.Watch(wctx, manifests.Key("Deployment", "default", "web"))
	if err != nil {
		t.Fatal(err)
	}
	var badWrites atomic.Int32
	go func() {
		for e := range wch {
			if e.Op != bus.OpPut {
				continue
			}
			obj, err := manifests.Decode(e.Value)
			if err != nil {
				continue
			}
			d := obj.(*manifests.Deployment)
			if manifests.Int32(d.Spec.Replicas, 1) != 5 || d.Annotations[manifests.AnnotationReplicasOwner] != "web" {
				badWrites.Add(1)
			}
		}
	}()
	r.write("web.yaml", deployment("web", 3, "img:1", requests+"          env: [{name: A, value: b}]\n"))
	r.commit("web at 3, with env")
	testwait.For(t, 10*time.Second, "the Deployment's new template", func() error {
		obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Deployment", "default", "web"))
		if err != nil {
			return err
		}
		d := obj.(*manifests.Deployment)
		if len(d.Spec.Template.Spec.Containers[0].Env) != 1 {
			return errors.New("the commit is not applied yet")
		}
		if n := manifests.Int32(d.Spec.Replicas, 1); n != 5 {
			return fmt.Errorf("the sync put back Git's replicas: %d", n)
		}
		return nil
	})
	testwait.Holds(t, 3*time.Second, "the sync keeps the HPA's replicas", func() error { // the sync resyncs every 2 s
		if n := badWrites.Load(); n > 0 {
			return fmt.Errorf("%d writes put another replica count or dropped the owner", n)
		}
		return nil
	})
	stopWatch()
	if n := badWrites.Load(); n > 0 {
		t.Fatalf("%d writes put another replica count or dropped the owner", n)
	}

	// Idle: down to the minimum once the 2 s window has passed.
	load.Store(5)
	testwait.For(t, 30*time.Second, "the HPA scaled web down", func() error {
		if n, _ := c.deploymentReplicas("web"); n != 1 {
			return fmt.Errorf("replicas %d", n)
		}
		return nil
	})

	// The autoscaler gone, Git's count applies again.
	if err := cache.DeleteObject(c.ctx, c.conn.Objects, manifests.Key("HorizontalPodAutoscaler", "default", "web"), 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "the HPA owns web's replicas", func() error {
		n, ann := c.deploymentReplicas("web")
		if n != 3 || ann[manifests.AnnotationReplicasOwner] != "" {
			return fmt.Errorf("replicas %d, owner %q", n, ann[manifests.AnnotationReplicasOwner])
		}
		return nil
	})
}
