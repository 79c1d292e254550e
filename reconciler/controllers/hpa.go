package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/ownership"
)

// Autoscaling constants, as Kubernetes' defaults.
const (
	// HPATolerance is how far the usage ratio may stray from 1 before the
	// autoscaler acts.
	HPATolerance = 0.1
	// hpaSyncPeriod is how often an autoscaler looks at its pods.
	hpaSyncPeriod = 15 * time.Second
	// hpaDefaultScaleDownWindow is the default scale-down stabilisation.
	hpaDefaultScaleDownWindow = 300 * time.Second
	// hpaDefaultCPUUtilization is the target when an autoscaler names none.
	hpaDefaultCPUUtilization = 80
	// hpaUsageMaxAge is how old a usage sample may be and still count.
	hpaUsageMaxAge = 2 * time.Minute
)

// PodMetric is one pod of a scaled workload as the recommendation sees it.
type PodMetric struct {
	// Ignored pods (being deleted, or finished) count for nothing.
	Ignored bool
	// Ready is false for a pod that is pending or not ready: it is left
	// out when scaling down and taken at zero use when scaling up.
	Ready bool
	// Request is the pod's request of the resource (millicores, bytes),
	// summed over its containers; 0 when a container requests none.
	Request int64
	// Usage is the measured use, when HasUsage.
	Usage    int64
	HasUsage bool
}

// MetricGoal is one resource target: Utilization (percent of the request)
// when positive, else AverageValue per pod.
type MetricGoal struct {
	Utilization  int32
	AverageValue int64
}

// ResourceRecommendation is what one resource metric asks for.
type ResourceRecommendation struct {
	Replicas int32
	// Utilization is the average use in percent of the request (for a
	// Utilization goal); Average the average use per pod.
	Utilization int32
	Average     int64
}

// Errors of the recommendation.
var (
	ErrNoMetrics      = errors.New("no metrics for the targeted pods (they may be unready)")
	ErrMissingRequest = errors.New("a targeted pod has no request for the resource")
)

// RecommendReplicas computes the replicas one resource metric asks for, as
// Kubernetes' replica calculator: desired = ceil(ready pods * usage ratio),
// nothing when the ratio is within the tolerance of 1; pods without a
// sample count at 100% of their request (or the target, if higher) when
// scaling down and at 0 when scaling up, unready pods at 0 when scaling up;
// and a correction that would flip the direction does nothing. It is pure.
func RecommendReplicas(current int32, pods []PodMetric, goal MetricGoal, tolerance float64) (ResourceRecommendation, error) {
	var rec ResourceRecommendation
	type sample struct{ usage, request int64 }
	var ready []sample
	var missing, unready []int64 // their requests
	for _, p := range pods {
		switch {
		case p.Ignored:
		case !p.Ready:
			unready = append(unready, p.Request)
		case !p.HasUsage:
			missing = append(missing, p.Request)
		default:
			ready = append(ready, sample{p.Usage, p.Request})
		}
		if !p.Ignored && goal.Utilization > 0 && p.Request <= 0 {
			return rec, ErrMissingRequest
		}
	}
	if len(ready) == 0 {
		return rec, ErrNoMetrics
	}
	// ratio returns the usage ratio of samples and the utilization or
	// average it comes from.
	ratio := func(ss []sample) (float64, int32, int64) {
		var usage, request int64
		for _, s := range ss {
			usage += s.usage
			request += s.request
		}
		avg := usage / int64(len(ss))
		if goal.Utilization > 0 {
			util := int32(usage * 100 / request)
			return float64(usage*100) / float64(request) / float64(goal.Utilization), util, avg
		}
		return float64(usage) / float64(len(ss)) / float64(goal.AverageValue), 0, avg
	}
	r, util, avg := ratio(ready)
	rec.Utilization, rec.Average = util, avg
	scaleUpWithUnready := len(unready) > 0 && r > 1
	if !scaleUpWithUnready && len(missing) == 0 {
		if math.Abs(1-r) <= tolerance {
			rec.Replicas = current
			return rec, nil
		}
		rec.Replicas = int32(math.Ceil(r * float64(len(ready))))
		return rec, nil
	}
	all := slices.Clone(ready)
	for _, req := range missing {
		switch {
		case r < 1 && goal.Utilization > 0:
			all = append(all, sample{req * int64(max(100, goal.Utilization)) / 100, req})
		case r < 1:
			all = append(all, sample{goal.AverageValue, req})
		case r > 1:
			all = append(all, sample{0, req})
		}
	}
	if scaleUpWithUnready {
		for _, req := range unready {
			all = append(all, sample{0, req})
		}
	}
	nr, _, _ := ratio(all)
	if math.Abs(1-nr) <= tolerance || (r < 1 && nr > 1) || (r > 1 && nr < 1) {
		rec.Replicas = current
		return rec, nil
	}
	n := int32(math.Ceil(nr * float64(len(all))))
	if (nr < 1 && n > current) || (nr > 1 && n < current) {
		n = current
	}
	rec.Replicas = n
	return rec, nil
}

// TimedReplicas is one recommendation, kept for stabilisation.
type TimedReplicas struct {
	At       time.Time
	Replicas int32
}

// StabilizeReplicas applies the stabilisation windows, as Kubernetes: the
// result is at least the lowest recommendation of the scale-up window and
// at most the highest of the scale-down window (both including desired),
// so a dip shorter than the scale-down window never scales down. It
// returns the recommendations to keep, desired recorded and those older
// than both windows dropped. It is pure.
func StabilizeReplicas(recs []TimedReplicas, desired, current int32, now time.Time, upWindow, downWindow time.Duration) (int32, []TimedReplicas) {
	up, down := desired, desired
	upCut, downCut := now.Add(-upWindow), now.Add(-downWindow)
	keep := make([]TimedReplicas, 0, len(recs)+1)
	for _, r := range recs {
		if r.At.After(upCut) {
			up = min(up, r.Replicas)
		}
		if r.At.After(downCut) {
			down = max(down, r.Replicas)
		}
		if r.At.After(upCut) || r.At.After(downCut) {
			keep = append(keep, r)
		}
	}
	out := current
	out = max(out, up)
	out = min(out, down)
	return out, append(keep, TimedReplicas{At: now, Replicas: desired})
}

// LimitReplicas bounds a stabilised recommendation by minReplicas,
// maxReplicas and Kubernetes' default scale-up rate (the larger of 100% and
// 4 pods per period); the scale-down rate (100%) binds nothing. It returns
// the ScalingLimited reason and message.
func LimitReplicas(desired, current, minReplicas, maxReplicas int32) (int32, string, string) {
	switch {
	case desired > current:
		limit := max(2*current, 4, current)
		if maxReplicas <= limit {
			if desired > maxReplicas {
				return maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
			}
		} else if desired > limit {
			return limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
	case desired < current:
		if desired < minReplicas {
			return minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		}
	}
	return desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// hpaController is the HorizontalPodAutoscaler controller. It keeps, per
// autoscaler, the recommendations of its stabilisation windows and when it
// last measured (the autoscaler measures once per period, not on every
// event: its own writes queue it again).
type hpaController struct {
	queued
	resyncPeriod time.Duration
	mu           sync.Mutex
	recs         map[string][]TimedReplicas
	lastSync     map[string]time.Time
}

func newHPAController(sh *shared, cp *ControlPlane) *hpaController {
	return &hpaController{queued: newQueued(sh, "HorizontalPodAutoscaler"), resyncPeriod: cp.ResyncPeriod,
		recs: map[string][]TimedReplicas{}, lastSync: map[string]time.Time{}}
}

// period is how often an autoscaler measures: 15 s, or the control
// plane's resync period if shorter (tests).
func (h *hpaController) period() time.Duration {
	if p := h.resyncPeriod; p > 0 && p < hpaSyncPeriod {
		return p
	}
	return hpaSyncPeriod
}

// scaleTarget is what the autoscaler reads and writes of a workload.
type scaleTarget struct {
	c              *cache.Cached
	specReplicas   int32
	statusReplicas int32
	selector       *manifests.LabelSelector
}

// scaleOf returns the scale of a workload the autoscaler supports.
func scaleOf(c *cache.Cached) (scaleTarget, bool) {
	t := scaleTarget{c: c}
	switch o := c.Obj.(type) {
	case *manifests.Deployment:
		t.specReplicas, t.statusReplicas, t.selector = manifests.Int32(o.Spec.Replicas, 1), o.Status.Replicas, o.Spec.Selector
	case *manifests.ReplicaSet:
		t.specReplicas, t.statusReplicas, t.selector = manifests.Int32(o.Spec.Replicas, 1), o.Status.Replicas, o.Spec.Selector
	case *manifests.StatefulSet:
		t.specReplicas, t.statusReplicas, t.selector = manifests.Int32(o.Spec.Replicas, 1), o.Status.Replicas, o.Spec.Selector
	default:
		return t, false
	}
	return t, true
}

var hpaTargetKinds = []string{"Deployment", "ReplicaSet", "StatefulSet"}

func (h *hpaController) reconcile(ctx context.Context, key string) error {
	_, ns, name, err := manifests.SplitKey(key)
	if err != nil {
		return err
	}
	c, ok := h.objects.Get(key)
	if !ok {
		h.mu.Lock()
		delete(h.recs, key)
		delete(h.lastSync, key)
		h.mu.Unlock()
		// Git's replica count applies again.
		return h.release(ctx, ns, name, "")
	}
	hpa := c.Obj.(*manifests.HorizontalPodAutoscaler)
	ref := hpa.Spec.ScaleTargetRef
	targetKey := manifests.Key(ref.Kind, ns, ref.Name)
	if err := h.release(ctx, ns, name, targetKey); err != nil {
		return err
	}
	now := time.Now()
	h.mu.Lock()
	last, seen := h.lastSync[key]
	h.mu.Unlock()
	if seen && now.Sub(last) < h.period() {
		h.requeue("HorizontalPodAutoscaler", key, h.period()-now.Sub(last))
		return nil
	}
	st := hpa.Status
	st.ObservedGeneration = hpa.Generation
	st.Conditions = slices.Clone(hpa.Status.Conditions)
	done := func(err error) error {
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.lastSync[key] = now
		h.mu.Unlock()
		h.requeue("HorizontalPodAutoscaler", key, h.period())
		return h.writeStatus(ctx, c, hpa, st)
	}

	tc, ok := h.objects.Get(targetKey)
	var target scaleTarget
	if ok {
		target, ok = scaleOf(tc)
	}
	if !ok || !slices.Contains(hpaTargetKinds, ref.Kind) {
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "AbleToScale", Status: manifests.ConditionFalse, Reason: "FailedGetScale",
			Message: fmt.Sprintf("the HPA controller was unable to get the target's current scale: %s %s/%s not found or not scalable", ref.Kind, ns, ref.Name)})
		return done(nil)
	}
	current := target.specReplicas
	minR := manifests.Int32(hpa.Spec.MinReplicas, 1)
	maxR := hpa.Spec.MaxReplicas
	st.CurrentReplicas = target.statusReplicas

	// Out of bounds, or disabled: no need to measure.
	switch {
	case current == 0 && minR != 0:
		// Scaled to zero behind the autoscaler (Git, before it owned the
		// target): it does not take over.
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "ScalingActive", Status: manifests.ConditionFalse, Reason: "ScalingDisabled",
			Message: "scaling is disabled since the replica count of the target is zero"})
		st.DesiredReplicas = 0
		return done(nil)
	case current > maxR:
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "ScalingLimited", Status: manifests.ConditionTrue, Reason: "TooManyReplicas",
			Message: "the current replica count is more than the maximum replica count"})
		st.DesiredReplicas = maxR
		return done(h.own(ctx, target, name, maxR, now, &st))
	case current < minR:
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "ScalingLimited", Status: manifests.ConditionTrue, Reason: "TooFewReplicas",
			Message: "the current replica count is less than the minimum replica count"})
		st.DesiredReplicas = minR
		return done(h.own(ctx, target, name, minR, now, &st))
	}

	rec, util, err := h.recommend(ctx, hpa, target, current)
	if err != nil {
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "ScalingActive", Status: manifests.ConditionFalse, Reason: "FailedGetResourceMetric",
			Message: "the HPA was unable to compute the replica count: " + err.Error()})
		st.CurrentCPUUtilizationPercentage = nil
		st.DesiredReplicas = current
		return done(h.own(ctx, target, name, current, now, &st))
	}
	st.CurrentCPUUtilizationPercentage = util
	st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "ScalingActive", Status: manifests.ConditionTrue, Reason: "ValidMetricFound",
		Message: "the HPA was able to successfully calculate a replica count from resource utilization"})

	upWin, downWin := time.Duration(0), hpaDefaultScaleDownWindow
	if b := hpa.Spec.Behavior; b != nil {
		if b.ScaleUp != nil && b.ScaleUp.StabilizationWindowSeconds != nil {
			upWin = time.Duration(*b.ScaleUp.StabilizationWindowSeconds) * time.Second
		}
		if b.ScaleDown != nil && b.ScaleDown.StabilizationWindowSeconds != nil {
			downWin = time.Duration(*b.ScaleDown.StabilizationWindowSeconds) * time.Second
		}
	}
	h.mu.Lock()
	recs, known := h.recs[key]
	if !known && downWin > 0 {
		// A new autoscaler (or a restarted control plane) does not scale
		// down before it has watched a whole window.
		recs = []TimedReplicas{{At: now, Replicas: current}}
	}
	stable, recs := StabilizeReplicas(recs, rec, current, now, upWin, downWin)
	h.recs[key] = recs
	h.mu.Unlock()
	able := manifests.Condition{Type: "AbleToScale", Status: manifests.ConditionTrue, Reason: "ReadyForNewScale", Message: "recommended size matches current size"}
	switch {
	case stable != rec && rec < current:
		able.Reason, able.Message = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
	case stable != rec:
		able.Reason, able.Message = "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
	}
	st.Conditions = manifests.UpdateCondition(st.Conditions, able)
	desired, reason, msg := LimitReplicas(stable, current, minR, maxR)
	limited := manifests.Condition{Type: "ScalingLimited", Status: manifests.ConditionFalse, Reason: reason, Message: msg}
	if desired != stable {
		limited.Status = manifests.ConditionTrue
	}
	st.Conditions = manifests.UpdateCondition(st.Conditions, limited)
	st.DesiredReplicas = desired
	return done(h.own(ctx, target, name, desired, now, &st))
}

// own marks the target as scaled by the autoscaler and sets its replicas
// (a CAS write); a change of scale is recorded in st.
func (h *hpaController) own(ctx context.Context, t scaleTarget, hpaName string, replicas int32, now time.Time, st *manifests.HorizontalPodAutoscalerStatus) error {
	m := t.c.Obj.GetObjectMeta()
	if m.Annotations[manifests.AnnotationReplicasOwner] == hpaName && t.specReplicas == replicas {
		return nil
	}
	upd := cache.Clone(t.c.Obj)
	um := upd.GetObjectMeta()
	if um.Annotations == nil {
		um.Annotations = map[string]string{}
	}
	um.Annotations[manifests.AnnotationReplicasOwner] = hpaName
	if t.specReplicas != replicas {
		ownership.SetReplicas(upd, replicas)
		um.Generation++
	}
	if _, err := cache.UpdateObject(ctx, h.store, upd, t.c.Rev); err != nil {
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "AbleToScale", Status: manifests.ConditionFalse, Reason: "FailedUpdateScale",
			Message: "the HPA controller was unable to update the target scale: " + err.Error()})
		return err
	}
	if t.specReplicas != replicas {
		st.LastScaleTime = manifests.NewTime(now)
		obj := t.c.Obj
		h.event(ctx, obj, "Normal", "ScaledByAutoscaler", fmt.Sprintf("Scaled from %d to %d by HorizontalPodAutoscaler %s", t.specReplicas, replicas, hpaName))
		h.log.Info("autoscaled", "target", manifests.KeyOf(obj), "from", t.specReplicas, "to", replicas, "hpa", hpaName)
	}
	return nil
}

// release removes the autoscaler's mark from the workloads of namespace ns
// it no longer scales (all but keep), so Git's replica count applies to
// them again.
func (h *hpaController) release(ctx context.Context, ns, hpaName, keep string) error {
	for _, kind := range hpaTargetKinds {
		for _, c := range h.objects.List(kind, ns) {
			if c.Key == keep || c.Obj.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner] != hpaName {
				continue
			}
			upd := cache.Clone(c.Obj)
			delete(upd.GetObjectMeta().Annotations, manifests.AnnotationReplicasOwner)
			if _, err := cache.UpdateObject(ctx, h.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
				return fmt.Errorf("release %s from autoscaler %s: %w", c.Key, hpaName, err)
			}
			h.log.Info("autoscaler released its target", "target", c.Key, "hpa", hpaName)
		}
	}
	return nil
}

// hpaMetric is one resource metric of an autoscaler.
type hpaMetric struct {
	resource string // cpu or memory
	goal     MetricGoal
}

// hpaMetrics reads the autoscaler's metrics: autoscaling/v2 Resource
// metrics, else v1's targetCPUUtilizationPercentage, else 80% cpu.
func hpaMetrics(hpa *manifests.HorizontalPodAutoscaler) ([]hpaMetric, error) {
	if len(hpa.Spec.Metrics) == 0 {
		return []hpaMetric{{"cpu", MetricGoal{Utilization: manifests.Int32(hpa.Spec.TargetCPUUtilizationPercentage, hpaDefaultCPUUtilization)}}}, nil
	}
	var out []hpaMetric
	for i, m := range hpa.Spec.Metrics {
		if m.Type != "Resource" || m.Resource == nil || (m.Resource.Name != "cpu" && m.Resource.Name != "memory") {
			return nil, fmt.Errorf("metrics[%d]: only Resource metrics of cpu or memory are supported", i)
		}
		t := m.Resource.Target
		switch {
		case t.Type == "Utilization" && t.AverageUtilization != nil && *t.AverageUtilization > 0:
			out = append(out, hpaMetric{m.Resource.Name, MetricGoal{Utilization: *t.AverageUtilization}})
		case t.Type == "AverageValue" && t.AverageValue != nil:
			var v int64
			var err error
			if m.Resource.Name == "cpu" {
				v, err = t.AverageValue.Milli()
			} else {
				v, err = t.AverageValue.Value()
			}
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("metrics[%d]: averageValue %q is not a positive quantity", i, *t.AverageValue)
			}
			out = append(out, hpaMetric{m.Resource.Name, MetricGoal{AverageValue: v}})
		default:
			return nil, fmt.Errorf("metrics[%d]: target type %q with no value", i, t.Type)
		}
	}
	return out, nil
}

// recommend measures the target's pods and returns the largest
// recommendation of the autoscaler's metrics, and the cpu utilisation.
func (h *hpaController) recommend(ctx context.Context, hpa *manifests.HorizontalPodAutoscaler, t scaleTarget, current int32) (int32, *int32, error) {
	metrics, err := hpaMetrics(hpa)
	if err != nil {
		return 0, nil, err
	}
	if t.selector == nil {
		return 0, nil, errors.New("the target has no selector")
	}
	var pods []*manifests.Pod
	for _, c := range h.objects.List("Pod", hpa.Namespace) {
		if p := c.Obj.(*manifests.Pod); t.selector.Matches(p.Labels) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return 0, nil, ErrNoMetrics
	}
	usage := h.usage(ctx, pods)
	var best int32
	var util *int32
	for _, m := range metrics {
		pm := make([]PodMetric, len(pods))
		for i, p := range pods {
			pm[i] = podMetric(p, m.resource, usage[i])
		}
		rec, err := RecommendReplicas(current, pm, m.goal, HPATolerance)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", m.resource, err)
		}
		best = max(best, rec.Replicas)
		if m.resource == "cpu" && m.goal.Utilization > 0 {
			util = manifests.Ptr(rec.Utilization)
		}
	}
	return best, util, nil
}

// usage reads the pods' latest usage samples from the status bucket; a
// sample of another pod of the same name, or an old one, is none.
func (h *hpaController) usage(ctx context.Context, pods []*manifests.Pod) []*manifests.PodUsage {
	out := make([]*manifests.PodUsage, len(pods))
	for i, p := range pods {
		if p.Spec.NodeName == "" {
			continue
		}
		e, err := h.podStatus.Get(ctx, manifests.AssignmentKey(p.Spec.NodeName, p.Namespace, p.Name))
		if err != nil {
			continue
		}
		var r manifests.PodStatusReport
		if json.Unmarshal(e.Value, &r) != nil || r.UID != p.UID || r.Usage == nil || r.Usage.Time == nil {
			continue
		}
		if time.Since(r.Usage.Time.Time) > hpaUsageMaxAge {
			continue
		}
		out[i] = r.Usage
	}
	return out
}

// podMetric is what the recommendation needs of one pod for a resource.
func podMetric(p *manifests.Pod, resource string, u *manifests.PodUsage) PodMetric {
	m := PodMetric{
		Ignored: p.DeletionTimestamp != nil || manifests.IsPodTerminal(p),
		Ready:   p.Status.Phase == manifests.PodRunning && manifests.IsPodReady(p),
	}
	if resource == "memory" {
		// Memory is not skewed by start-up: only pending pods are unready.
		m.Ready = p.Status.Phase != manifests.PodPending && p.Status.Phase != ""
	}
	for _, c := range p.Spec.Containers {
		var r int64
		if resource == "cpu" {
			r = c.Resources.Requests.MilliCPU()
		} else {
			r = c.Resources.Requests.MemoryBytes()
		}
		if r <= 0 {
			m.Request = 0
			break
		}
		m.Request += r
	}
	if u != nil {
		m.HasUsage = true
		if resource == "cpu" {
			m.Usage = u.CPUMilli
		} else {
			m.Usage = u.MemoryBytes
		}
	}
	return m
}

func (h *hpaController) writeStatus(ctx context.Context, c *cache.Cached, hpa *manifests.HorizontalPodAutoscaler, st manifests.HorizontalPodAutoscalerStatus) error {
	if manifests.Hash(st) == manifests.Hash(hpa.Status) {
		return nil
	}
	upd := cache.Clone(hpa)
	upd.Status = st
	if _, err := cache.UpdateObject(ctx, h.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}
