package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Labels a Job puts on its pods, as Kubernetes: the short forms and the
// batch.kubernetes.io ones.
const (
	LabelJobName            = "job-name"
	LabelControllerUID      = "controller-uid"
	LabelBatchJobName       = "batch.kubernetes.io/job-name"
	LabelBatchControllerUID = "batch.kubernetes.io/controller-uid"
)

// Job conditions and defaults, as Kubernetes; the back-off before a failed
// pod is replaced is 10 s doubling to 6 min.
const (
	jobConditionComplete   = "Complete"
	jobConditionFailed     = "Failed"
	jobConditionSuspended  = "Suspended"
	reasonBackoffLimit     = "BackoffLimitExceeded"
	reasonDeadlineExceeded = "DeadlineExceeded"
	defaultJobBackoffLimit = 6
	jobBackoffBase         = 10 * time.Second
	jobBackoffMax          = 6 * time.Minute
	// requeueMargin is added to a requeue for a moment (a deadline, a
	// schedule time) so the reconcile runs just after it, never before.
	requeueMargin = 10 * time.Millisecond
)

// JobInput is what the Job planner needs to know of a Job and its pods.
type JobInput struct {
	// Completions is nil for a work queue: the Job is done when any pod
	// succeeded and none is active.
	Completions   *int32
	Parallelism   int32
	BackoffLimit  int32
	RestartPolicy string // Never or OnFailure
	Suspend       bool

	Active    int32 // pods neither finished nor being deleted
	Succeeded int32
	Failed    int32
	// Restarts is the container restarts of the active pods: with
	// OnFailure the node restarts containers in place, and they count
	// toward the back-off limit.
	Restarts int32
	// FailuresSinceSuccess and LastFailure drive the back-off before
	// failed pods are replaced: 10 s doubling, capped at 6 min.
	FailuresSinceSuccess int32
	LastFailure          time.Time

	StartTime      *time.Time     // when the Job (last) started running; nil if not yet
	ActiveDeadline *time.Duration // activeDeadlineSeconds
	Now            time.Time
}

// JobPlan is what to do now: create or delete pods, or finish the Job.
type JobPlan struct {
	Create int32
	Delete int32 // active pods to delete
	// Finish is "", Complete or Failed; Reason says why a Job failed.
	Finish, Reason, Message string
	// Wait, if positive, is when to look again with no event to mark it:
	// the back-off ending or the deadline passing.
	Wait time.Duration
}

// JobBackoff returns the delay before a Job replaces its n-th consecutive
// failed pod: 10 s doubling, capped at 6 min.
func JobBackoff(n int32) time.Duration {
	if n <= 0 {
		return 0
	}
	return min(jobBackoffBase<<min(n-1, 10), jobBackoffMax)
}

// PlanJob decides what a Job does now, as the Kubernetes Job controller
// with non-indexed completions. It is pure. It never plans more than
// parallelism active pods, nor more active pods than the completions still
// missing, so succeeded pods never exceed completions.
func PlanJob(in JobInput) JobPlan {
	var p JobPlan
	active := in.Active
	// Done?
	if in.Completions != nil && in.Succeeded >= *in.Completions {
		return JobPlan{Finish: jobConditionComplete, Delete: active}
	}
	if in.Completions == nil && in.Succeeded > 0 && active == 0 {
		return JobPlan{Finish: jobConditionComplete}
	}
	// Failed?
	if in.Failed > in.BackoffLimit {
		return JobPlan{Finish: jobConditionFailed, Reason: reasonBackoffLimit, Message: "Job has reached the specified backoff limit", Delete: active}
	}
	// With OnFailure, container restarts count (a limit of 0 fails on the
	// first restart).
	if in.RestartPolicy == manifests.RestartOnFailure && in.Restarts > 0 && in.Restarts >= in.BackoffLimit {
		return JobPlan{Finish: jobConditionFailed, Reason: reasonBackoffLimit, Message: "Job has reached the specified backoff limit", Delete: active}
	}
	if !in.Suspend && in.StartTime != nil && in.ActiveDeadline != nil {
		left := in.StartTime.Add(*in.ActiveDeadline).Sub(in.Now)
		if left <= 0 {
			return JobPlan{Finish: jobConditionFailed, Reason: reasonDeadlineExceeded, Message: "Job was active longer than specified deadline", Delete: active}
		}
		p.Wait = left
	}
	// How many should run.
	want := in.Parallelism
	switch {
	case in.Suspend:
		want = 0
	case in.Completions == nil:
		if in.Succeeded > 0 {
			want = active // a pod succeeded: let the others finish, start none
		}
	default:
		want = min(*in.Completions-in.Succeeded, in.Parallelism)
	}
	want = max(want, 0)
	switch {
	case active > want:
		p.Delete = active - want
	case active < want:
		if in.FailuresSinceSuccess > 0 {
			if left := in.LastFailure.Add(JobBackoff(in.FailuresSinceSuccess)).Sub(in.Now); left > 0 {
				p.Wait = minPositive(p.Wait, left)
				return p
			}
		}
		p.Create = want - active
	}
	return p
}

func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// JobFinished returns the type of a Job's finished condition (Complete or
// Failed) and when it was set, or "".
func JobFinished(j *manifests.Job) (string, time.Time) {
	for _, t := range []string{jobConditionComplete, jobConditionFailed} {
		if c := manifests.FindCondition(j.Status.Conditions, t); c != nil && c.Status == manifests.ConditionTrue {
			var at time.Time
			if c.LastTransitionTime != nil {
				at = c.LastTransitionTime.Time
			}
			if t == jobConditionComplete && j.Status.CompletionTime != nil {
				at = j.Status.CompletionTime.Time
			}
			return t, at
		}
	}
	return "", time.Time{}
}

// jobPods is a Job's pods, sorted out.
type jobPods struct {
	active                             []*cache.Cached
	succeeded, failed, ready, restarts int32
	failuresSinceSuccess               int32
	lastFailure, lastSuccess           time.Time
}

func (ctl *jobController) jobPods(job *manifests.Job) jobPods {
	var jp jobPods
	var failedAt []time.Time
	for _, c := range ctl.podsOwnedBy(job) {
		pod := c.Obj.(*manifests.Pod)
		switch {
		case pod.Status.Phase == manifests.PodSucceeded:
			jp.succeeded++
			jp.lastSuccess = later(jp.lastSuccess, podFinishedAt(pod))
		case pod.Status.Phase == manifests.PodFailed:
			jp.failed++
			failedAt = append(failedAt, podFinishedAt(pod))
		case pod.DeletionTimestamp != nil:
		default:
			jp.active = append(jp.active, c)
			if manifests.IsPodReady(pod) {
				jp.ready++
			}
			for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
				jp.restarts += cs.RestartCount
			}
		}
	}
	for _, t := range failedAt {
		if t.After(jp.lastSuccess) {
			jp.failuresSinceSuccess++
			jp.lastFailure = later(jp.lastFailure, t)
		}
	}
	return jp
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// podFinishedAt is when a terminal pod's last container ended, or failing
// that when the node last reported it, or when it was made.
func podFinishedAt(p *manifests.Pod) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if tm := cs.State.Terminated; tm != nil && tm.FinishedAt != nil {
			t = later(t, tm.FinishedAt.Time)
		}
	}
	if t.IsZero() && p.Status.ObservedAt != nil {
		t = p.Status.ObservedAt.Time
	}
	if t.IsZero() && p.CreationTimestamp != nil {
		t = p.CreationTimestamp.Time
	}
	return t
}

// jobController runs Jobs' pods to completion and tracks their status.
type jobController struct{ queued }

func newJobController(sh *shared) *jobController {
	return &jobController{newQueued(sh, "Job")}
}

func (ctl *jobController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected
	}
	if !ctl.exp.satisfied(key, ctl.objects) {
		return nil // the pod events will queue it again
	}
	job := c.Obj.(*manifests.Job)
	now := time.Now()
	jp := ctl.jobPods(job)
	if fin, at := JobFinished(job); fin != "" {
		return ctl.finishedJob(ctx, c, job, jp, at, now)
	}
	if job.Spec.CompletionMode == "Indexed" {
		// Not built: the schema is to refuse it; a Job written on the bus
		// with it runs nothing rather than run the wrong way.
		ctl.event(ctx, job, "Warning", "UnsupportedCompletionMode", "completionMode Indexed is not supported")
		return nil
	}
	policy := job.Spec.Template.Spec.RestartPolicy
	if policy != manifests.RestartNever && policy != manifests.RestartOnFailure {
		ctl.event(ctx, job, "Warning", "InvalidRestartPolicy",
			fmt.Sprintf("the pod template's restartPolicy is %q; a Job needs Never or OnFailure", policy))
		return nil
	}

	st := job.Status
	st.Conditions = slices.Clone(job.Status.Conditions)
	suspend := job.Spec.Suspend != nil && *job.Spec.Suspend
	var events [][2]string // reason, message: recorded once the status is written
	// Suspension: the clock of activeDeadlineSeconds restarts on resume.
	wasSuspended := false
	if sc := manifests.FindCondition(st.Conditions, jobConditionSuspended); sc != nil && sc.Status == manifests.ConditionTrue {
		wasSuspended = true
	}
	switch {
	case suspend && !wasSuspended:
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: jobConditionSuspended, Status: manifests.ConditionTrue, Reason: "JobSuspended", Message: "Job suspended"})
		events = append(events, [2]string{"Suspended", "Job suspended"})
	case !suspend && wasSuspended:
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: jobConditionSuspended, Status: manifests.ConditionFalse, Reason: "JobResumed", Message: "Job resumed"})
		st.StartTime = manifests.NewTime(now)
		events = append(events, [2]string{"Resumed", "Job resumed"})
	}
	if !suspend && st.StartTime == nil {
		st.StartTime = manifests.NewTime(now)
	}

	completions := job.Spec.Completions
	if completions == nil && job.Spec.Parallelism == nil {
		completions = manifests.Ptr(int32(1))
	}
	in := JobInput{
		Completions:          completions,
		Parallelism:          manifests.Int32(job.Spec.Parallelism, 1),
		BackoffLimit:         manifests.Int32(job.Spec.BackoffLimit, defaultJobBackoffLimit),
		RestartPolicy:        policy,
		Suspend:              suspend,
		Active:               int32(len(jp.active)),
		Succeeded:            max(jp.succeeded, st.Succeeded), // counts never go back
		Failed:               max(jp.failed, st.Failed),
		Restarts:             jp.restarts,
		FailuresSinceSuccess: jp.failuresSinceSuccess,
		LastFailure:          jp.lastFailure,
		Now:                  now,
	}
	if st.StartTime != nil {
		in.StartTime = &st.StartTime.Time
	}
	if d := job.Spec.ActiveDeadlineSeconds; d != nil {
		in.ActiveDeadline = manifests.Ptr(time.Duration(*d) * time.Second)
	}
	plan := PlanJob(in)

	st.Succeeded, st.Failed = in.Succeeded, in.Failed
	st.Active = in.Active + plan.Create - plan.Delete
	st.Ready = manifests.Ptr(jp.ready)
	switch plan.Finish {
	case jobConditionComplete:
		st.CompletionTime = manifests.NewTime(now)
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: jobConditionComplete, Status: manifests.ConditionTrue})
		events = append(events, [2]string{"Completed", "Job completed"})
	case jobConditionFailed:
		st.Failed += plan.Delete // pods killed by the Job's failure count as failed
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: jobConditionFailed, Status: manifests.ConditionTrue, Reason: plan.Reason, Message: plan.Message})
		events = append(events, [2]string{plan.Reason, plan.Message})
	}
	if plan.Finish != "" {
		st.Active, st.Ready = 0, manifests.Ptr(int32(0))
		// Record the outcome before touching pods: a finished Job is never
		// planned again, and its leftover pods are deleted by every
		// reconcile until they are gone.
		if err := ctl.writeJobStatus(ctx, c, job, st); err != nil {
			return err
		}
		for _, e := range events {
			typ := "Normal"
			if plan.Finish == jobConditionFailed && e[0] == plan.Reason {
				typ = "Warning"
			}
			ctl.event(ctx, job, typ, e[0], e[1])
		}
		return nil // the status write queues the Job again: finishedJob cleans up
	}

	if plan.Create > 0 {
		n := min(plan.Create, maxBurst)
		pods := make([]*manifests.Pod, 0, n)
		var adds []string
		for range n {
			pod := jobPodFromTemplate(job)
			pods = append(pods, pod)
			adds = append(adds, manifests.KeyOf(pod))
		}
		ctl.exp.expect(key, adds, nil)
		for _, pod := range pods {
			if _, err := cache.CreateObject(ctx, ctl.store, pod); err != nil {
				ctl.exp.expect(key, nil, nil)
				return fmt.Errorf("job %s: %w", key, err)
			}
		}
		ctl.event(ctx, job, "Normal", "SuccessfulCreate", fmt.Sprintf("Created %d pod(s)", n))
	}
	if plan.Delete > 0 {
		if err := ctl.deleteJobPods(ctx, key, job, jp.active, int(plan.Delete)); err != nil {
			return err
		}
	}
	if plan.Wait > 0 {
		ctl.requeue("Job", key, plan.Wait+requeueMargin)
	}
	if err := ctl.writeJobStatus(ctx, c, job, st); err != nil {
		return err
	}
	for _, e := range events {
		ctl.event(ctx, job, "Normal", e[0], e[1])
	}
	return nil
}

// jobPodFromTemplate makes a new pod of job, labelled with the Job's name
// and uid as Kubernetes does (the Job's selector is generated from them).
func jobPodFromTemplate(job *manifests.Job) *manifests.Pod {
	pod := podFromTemplate(job, &job.Spec.Template, job.Name+"-"+cache.RandomSuffix(5))
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelJobName] = job.Name
	pod.Labels[LabelBatchJobName] = job.Name
	pod.Labels[LabelControllerUID] = job.UID
	pod.Labels[LabelBatchControllerUID] = job.UID
	return pod
}

// deleteJobPods deletes n of the active pods, the cheapest to lose first.
func (ctl *jobController) deleteJobPods(ctx context.Context, key string, job *manifests.Job, active []*cache.Cached, n int) error {
	active = slices.Clone(active)
	slices.SortFunc(active, func(a, b *cache.Cached) int {
		ra, rb := podRank(a.Obj.(*manifests.Pod)), podRank(b.Obj.(*manifests.Pod))
		switch {
		case ra.Less(rb):
			return -1
		case rb.Less(ra):
			return 1
		}
		return 0
	})
	n = min(n, len(active), maxBurst)
	var dels []string
	for _, p := range active[:n] {
		dels = append(dels, p.Key)
	}
	ctl.exp.expect(key, nil, dels)
	for _, p := range active[:n] {
		if err := DeleteGracefully(ctx, ctl.store, p.Key, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
			ctl.exp.expect(key, nil, nil)
			return fmt.Errorf("job %s: %w", key, err)
		}
	}
	ctl.event(ctx, job, "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted %d pod(s)", n))
	return nil
}

// finishedJob cleans up after a Job that completed or failed: its active
// pods go, its counts settle, and ttlSecondsAfterFinished deletes it.
func (ctl *jobController) finishedJob(ctx context.Context, c *cache.Cached, job *manifests.Job, jp jobPods, finishedAt, now time.Time) error {
	key := c.Key
	if len(jp.active) > 0 {
		return ctl.deleteJobPods(ctx, key, job, jp.active, len(jp.active))
	}
	st := job.Status
	st.Active, st.Ready = 0, manifests.Ptr(int32(0))
	st.Succeeded, st.Failed = max(st.Succeeded, jp.succeeded), max(st.Failed, jp.failed)
	if err := ctl.writeJobStatus(ctx, c, job, st); err != nil {
		return err
	}
	ttl := job.Spec.TTLSecondsAfterFinished
	if ttl == nil {
		return nil
	}
	if left := finishedAt.Add(time.Duration(*ttl) * time.Second).Sub(now); left > 0 {
		ctl.requeue("Job", key, left+requeueMargin)
		return nil
	}
	if job.Annotations[manifests.AnnotationSource] != "" {
		// Git declares this Job: deleting it would only have the sync
		// create it again and run it again. Its pods go; the Job and its
		// outcome stay while Git declares it.
		var pods []string
		for _, p := range ctl.podsOwnedBy(job) {
			if p.Obj.GetObjectMeta().DeletionTimestamp == nil {
				pods = append(pods, p.Key)
			}
		}
		if len(pods) == 0 {
			return nil
		}
		ctl.exp.expect(key, nil, pods)
		for _, k := range pods {
			if err := DeleteGracefully(ctx, ctl.store, k, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
				ctl.exp.expect(key, nil, nil)
				return err
			}
		}
		ctl.event(ctx, job, "Normal", "TTLExpired", fmt.Sprintf("Deleted %d finished pod(s); the Job stays while Git declares it", len(pods)))
		return nil
	}
	if err := cache.DeleteObject(ctx, ctl.store, key, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	ctl.log.Info("deleted finished job after its ttl", "job", job.Namespace+"/"+job.Name)
	return nil
}

// writeJobStatus writes st if it differs from the Job's status.
func (ctl *jobController) writeJobStatus(ctx context.Context, c *cache.Cached, job *manifests.Job, st manifests.JobStatus) error {
	if manifests.Hash(st) == manifests.Hash(job.Status) {
		return nil
	}
	upd := cache.Clone(job)
	upd.Status = st
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}
