package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// AnnotationCronJobScheduledTime is set on a Job a CronJob made: the
// scheduled time it runs for, RFC 3339, as Kubernetes.
const AnnotationCronJobScheduledTime = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// tooManyMissed is how many missed start times make a CronJob record a
// warning (it still starts the latest), as Kubernetes.
const tooManyMissed = 100

// CronJob actions.
const (
	CronNothing        = ""               // no unmet schedule time
	CronCreate         = "Create"         // make the Job of Scheduled
	CronForbidden      = "Forbidden"      // Forbid: a Job is still active; skip for now
	CronMissedDeadline = "MissedDeadline" // the time is older than startingDeadlineSeconds
)

// ParseCronSchedule parses a CronJob's schedule (five fields, or a
// descriptor such as @hourly or @every 2s) in timeZone, or in the local time
// zone when timeZone is nil, as Kubernetes does. A schedule may not carry
// its own TZ= or CRON_TZ= when timeZone is set.
func ParseCronSchedule(schedule string, timeZone *string) (cron.Schedule, error) {
	if timeZone == nil || *timeZone == "" {
		s, err := cron.ParseStandard(schedule)
		if err != nil {
			return nil, fmt.Errorf("schedule %q: %w", schedule, err)
		}
		return s, nil
	}
	if strings.Contains(schedule, "TZ=") {
		return nil, fmt.Errorf("schedule %q: TZ or CRON_TZ is not allowed with timeZone", schedule)
	}
	if _, err := time.LoadLocation(*timeZone); err != nil {
		return nil, fmt.Errorf("timeZone %q: %w", *timeZone, err)
	}
	s, err := cron.ParseStandard("CRON_TZ=" + *timeZone + " " + schedule)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", schedule, err)
	}
	return s, nil
}

// CronInput is what the CronJob planner needs.
type CronInput struct {
	Schedule cron.Schedule
	Now      time.Time
	// Created is the CronJob's creation; LastSchedule the time of the last
	// Job it made (nil if none). Schedule times after the later of the two
	// are unmet.
	Created      time.Time
	LastSchedule *time.Time
	// StartingDeadline, if set, is how late a Job may start; older unmet
	// times are skipped.
	StartingDeadline *time.Duration
	Policy           string // Allow, Forbid or Replace
	Suspend          bool
	Active           int // the CronJob's Jobs still running
}

// CronPlan is what a CronJob does now.
type CronPlan struct {
	Action string
	// Scheduled is the unmet schedule time acted on: the most recent one.
	Scheduled time.Time
	// ReplaceActive: delete the active Jobs before creating (Replace).
	ReplaceActive bool
	// Missed counts the unmet schedule times (estimated beyond 100);
	// TooManyMissed is Missed > 100.
	Missed        int
	TooManyMissed bool
	// Next is the first schedule time after Now: when to look again. It is
	// zero when suspended or when the schedule never fires again.
	Next time.Time
}

// PlanCronJob decides what a CronJob does at in.Now, as the Kubernetes
// CronJob controller: only the most recent unmet schedule time is run (a
// control plane that was down runs one Job, not one per missed time), if
// it is within startingDeadlineSeconds; Forbid skips it while a Job is
// active (it starts when that one finishes, if still within the deadline);
// Replace deletes the active Jobs first. It is pure.
func PlanCronJob(in CronInput) CronPlan {
	var p CronPlan
	if in.Suspend {
		return p
	}
	p.Next = in.Schedule.Next(in.Now)
	earliest := in.Created
	if in.LastSchedule != nil {
		earliest = *in.LastSchedule
	}
	if in.StartingDeadline != nil {
		if d := in.Now.Add(-*in.StartingDeadline); d.After(earliest) {
			earliest = d
		}
	}
	t, n, ok := mostRecentSchedule(in.Schedule, earliest, in.Now)
	if !ok {
		return p
	}
	p.Scheduled, p.Missed, p.TooManyMissed = t, n, n > tooManyMissed
	switch {
	case in.StartingDeadline != nil && t.Add(*in.StartingDeadline).Before(in.Now):
		p.Action = CronMissedDeadline
	case in.Active > 0 && in.Policy == manifests.ForbidConcurrent:
		p.Action = CronForbidden
	default:
		p.Action = CronCreate
		p.ReplaceActive = in.Active > 0 && in.Policy == manifests.ReplaceConcurrent
	}
	return p
}

// mostRecentSchedule returns the latest schedule time in (earliest, now],
// and how many there are (estimated past 100); ok is false if none.
func mostRecentSchedule(s cron.Schedule, earliest, now time.Time) (time.Time, int, bool) {
	t1 := s.Next(earliest)
	if t1.IsZero() || t1.After(now) {
		return time.Time{}, 0, false
	}
	t, n := t1, 1
	for ; n <= tooManyMissed; n++ {
		nx := s.Next(t)
		if nx.IsZero() || nx.After(now) {
			return t, n, true
		}
		t = nx
	}
	// Very many missed (a control plane down for long, a clock far off):
	// do not walk them all.
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		// @every: the times are t1 + k*delay.
		k := now.Sub(t1) / every.Delay
		return t1.Add(k * every.Delay), int(k) + 1, true
	}
	// Estimate their number from the first gap, and find the latest by
	// searching back from now in growing windows.
	gap := max(s.Next(t1).Sub(t1), time.Second)
	n = int(now.Sub(t1)/gap) + 1
	for w := gap; ; w *= 2 {
		start := now.Add(-w)
		if !start.After(t) {
			start = t // we already walked up to t
		}
		if nx := s.Next(start); !nx.IsZero() && !nx.After(now) {
			last := nx
			for nx = s.Next(nx); !nx.IsZero() && !nx.After(now); nx = s.Next(nx) {
				last = nx
			}
			return last, max(n, tooManyMissed+1), true
		}
		if start.Equal(t) {
			return t, max(n, tooManyMissed+1), true
		}
	}
}

// CronJobName is the name of the Job a CronJob makes for a scheduled time:
// <cronjob>-<unix minutes>, as Kubernetes, so a retry never makes a second
// Job for one time. A time that is not on a whole minute (an @every
// schedule of seconds) takes unix seconds instead, so two times in one
// minute do not share a name.
func CronJobName(cronJob string, scheduled time.Time) string {
	if scheduled.Second() == 0 && scheduled.Nanosecond() == 0 {
		return fmt.Sprintf("%s-%d", cronJob, scheduled.Unix()/60)
	}
	return fmt.Sprintf("%s-%d", cronJob, scheduled.Unix())
}

type ownedJob struct {
	c   *cache.Cached
	job *manifests.Job
}

// cronJobController starts CronJobs' Jobs on their schedule and prunes
// their history.
type cronJobController struct{ queued }

func newCronJobController(sh *shared) *cronJobController {
	return &cronJobController{newQueued(sh, "CronJob")}
}

func (ctl *cronJobController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its Jobs are garbage-collected
	}
	cj := c.Obj.(*manifests.CronJob)
	now := time.Now()
	var active, succeeded, failed []ownedJob
	for _, jc := range ctl.objects.List("Job", cj.Namespace) {
		if !cache.IsControlledBy(jc.Obj, cj) {
			continue
		}
		j := jc.Obj.(*manifests.Job)
		switch fin, _ := JobFinished(j); fin {
		case jobConditionComplete:
			succeeded = append(succeeded, ownedJob{jc, j})
		case jobConditionFailed:
			failed = append(failed, ownedJob{jc, j})
		default:
			active = append(active, ownedJob{jc, j})
		}
	}
	st := cj.Status
	st.Active = nil
	slices.SortFunc(active, func(a, b ownedJob) int { return strings.Compare(a.job.Name, b.job.Name) })
	for _, a := range active {
		st.Active = append(st.Active, jobRef(a.job))
	}
	for _, s := range succeeded {
		if ct := s.job.Status.CompletionTime; ct != nil && (st.LastSuccessfulTime == nil || ct.After(st.LastSuccessfulTime.Time)) {
			st.LastSuccessfulTime = ct
		}
	}
	if err := ctl.pruneCronJobHistory(ctx, cj, succeeded, manifests.Int32(cj.Spec.SuccessfulJobsHistoryLimit, 3)); err != nil {
		return err
	}
	if err := ctl.pruneCronJobHistory(ctx, cj, failed, manifests.Int32(cj.Spec.FailedJobsHistoryLimit, 1)); err != nil {
		return err
	}

	suspend := cj.Spec.Suspend != nil && *cj.Spec.Suspend
	if suspend {
		return ctl.writeCronJobStatus(ctx, c, cj, st)
	}
	sched, err := ParseCronSchedule(cj.Spec.Schedule, cj.Spec.TimeZone)
	if err != nil {
		// Nothing to retry until the CronJob changes.
		ctl.event(ctx, cj, "Warning", "InvalidSchedule", err.Error())
		return ctl.writeCronJobStatus(ctx, c, cj, st)
	}
	in := CronInput{Schedule: sched, Now: now, Policy: cj.Spec.ConcurrencyPolicy, Active: len(active)}
	if cj.CreationTimestamp != nil {
		in.Created = cj.CreationTimestamp.Time
	}
	if st.LastScheduleTime != nil {
		in.LastSchedule = &st.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		in.StartingDeadline = manifests.Ptr(time.Duration(*d) * time.Second)
	}
	plan := PlanCronJob(in)
	if plan.TooManyMissed {
		ctl.event(ctx, cj, "Warning", "TooManyMissedTimes",
			fmt.Sprintf("too many missed start times: %d; starting the latest. Set or decrease .spec.startingDeadlineSeconds or check clock skew", plan.Missed))
	}
	switch plan.Action {
	case CronMissedDeadline:
		ctl.event(ctx, cj, "Warning", "MissSchedule", fmt.Sprintf("Missed scheduled time to start a job: %s", plan.Scheduled.UTC().Format(time.RFC3339)))
	case CronForbidden:
		ctl.event(ctx, cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
	case CronCreate:
		name := CronJobName(cj.Name, plan.Scheduled)
		if _, exists := ctl.objects.Get(manifests.Key("Job", cj.Namespace, name)); !exists {
			if plan.ReplaceActive {
				for _, a := range active {
					if err := cache.DeleteObject(ctx, ctl.store, a.c.Key, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
						return fmt.Errorf("cronjob %s: replace: %w", key, err)
					}
					ctl.event(ctx, cj, "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted job %s", a.job.Name))
				}
				st.Active = nil
			}
			job := jobFromCronJob(cj, name, plan.Scheduled)
			_, err := cache.CreateObject(ctx, ctl.store, job)
			switch {
			case err == nil:
				ctl.event(ctx, cj, "Normal", "SuccessfulCreate", "Created job "+name)
				st.Active = append(st.Active, jobRef(job))
			case errors.Is(err, bus.ErrExists):
				// Made by an earlier attempt whose status write was lost.
			default:
				return fmt.Errorf("cronjob %s: %w", key, err)
			}
		}
		if st.LastScheduleTime == nil || plan.Scheduled.After(st.LastScheduleTime.Time) {
			st.LastScheduleTime = manifests.NewTime(plan.Scheduled)
		}
	}
	if err := ctl.writeCronJobStatus(ctx, c, cj, st); err != nil {
		return err
	}
	if !plan.Next.IsZero() {
		ctl.requeue("CronJob", key, plan.Next.Sub(now)+requeueMargin)
	}
	return nil
}

// jobFromCronJob makes the Job of one scheduled time from the template.
func jobFromCronJob(cj *manifests.CronJob, name string, scheduled time.Time) *manifests.Job {
	t := cj.Spec.JobTemplate
	spec := cache.Clone(&manifests.Job{TypeMeta: manifests.TypeMeta{Kind: "Job"}, Spec: t.Spec}).Spec
	ann := maps.Clone(t.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationCronJobScheduledTime] = scheduled.UTC().Format(time.RFC3339)
	return &manifests.Job{
		TypeMeta: manifests.TypeMeta{Kind: "Job", APIVersion: "batch/v1"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            name,
			Namespace:       cj.Namespace,
			Labels:          maps.Clone(t.Labels),
			Annotations:     ann,
			OwnerReferences: []manifests.OwnerReference{cache.OwnerRef(cj)},
		},
		Spec: spec,
	}
}

func jobRef(j *manifests.Job) manifests.ObjectReference {
	return manifests.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID}
}

// pruneCronJobHistory deletes the oldest finished Jobs beyond limit.
func (ctl *cronJobController) pruneCronJobHistory(ctx context.Context, cj *manifests.CronJob, jobs []ownedJob, limit int32) error {
	if int32(len(jobs)) <= limit {
		return nil
	}
	slices.SortFunc(jobs, func(a, b ownedJob) int {
		if c := jobStarted(a.job).Compare(jobStarted(b.job)); c != 0 {
			return c
		}
		return strings.Compare(a.job.Name, b.job.Name)
	})
	for _, j := range jobs[:len(jobs)-int(max(limit, 0))] {
		if err := cache.DeleteObject(ctx, ctl.store, j.c.Key, j.c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("cronjob %s/%s: delete old job: %w", cj.Namespace, cj.Name, err)
		}
		ctl.event(ctx, cj, "Normal", "SuccessfulDelete", "Deleted job "+j.job.Name)
	}
	return nil
}

// jobStarted orders a CronJob's Jobs: by the scheduled time they ran for,
// else by start or creation.
func jobStarted(j *manifests.Job) time.Time {
	if s, ok := j.Annotations[AnnotationCronJobScheduledTime]; ok {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t
		}
	}
	if j.Status.StartTime != nil {
		return j.Status.StartTime.Time
	}
	if j.CreationTimestamp != nil {
		return j.CreationTimestamp.Time
	}
	return time.Time{}
}

func (ctl *cronJobController) writeCronJobStatus(ctx context.Context, c *cache.Cached, cj *manifests.CronJob, st manifests.CronJobStatus) error {
	if manifests.Hash(st) == manifests.Hash(cj.Status) {
		return nil
	}
	upd := cache.Clone(cj)
	upd.Status = st
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}
