package schema

import (
	"maps"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones are checked the same on every host

	"github.com/robfig/cron/v3"

	"github.com/capstan-io/capstan/manifests"
)

// checkReplicationController defaults the selector to the template's
// labels, as Kubernetes does, and checks it selects them.
func checkReplicationController(d doc, spec *manifests.ReplicationControllerSpec) []Error {
	at := []any{"spec", "selector"}
	labels := spec.Template.Labels
	if len(spec.Selector) == 0 {
		spec.Selector = maps.Clone(labels)
	}
	var errs []Error
	switch {
	case len(spec.Selector) == 0 && d.has(at):
		errs = append(errs, d.errorf(at, "empty selector, and the template has no labels to default it to"))
	case len(spec.Selector) == 0:
		errs = append(errs, d.errorf([]any{"spec", "template", "metadata", "labels"}, "may not be empty: the selector defaults to them"))
	case !(&manifests.LabelSelector{MatchLabels: spec.Selector}).Matches(labels):
		errs = append(errs, d.errorf(at, "selector does not match the template's labels %s", formatLabels(labels)))
	}
	return append(errs, checkPodSpec(d, templateSpec, &spec.Template.Spec, nil)...)
}

// checkStatefulSet checks the selector, the claim templates (unique names,
// which the template's volumeMounts may use) and the update strategy.
func checkStatefulSet(d doc, spec *manifests.StatefulSetSpec) []Error {
	errs := checkSelector(d, []any{"spec", "selector"}, spec.Selector, spec.Template.Labels)
	claims := []string{}
	seen := map[string]bool{}
	for i, c := range spec.VolumeClaimTemplates {
		if seen[c.Name] {
			errs = append(errs, d.errorf([]any{"spec", "volumeClaimTemplates", i, "metadata", "name"}, "duplicate claim template name %q", c.Name))
		}
		seen[c.Name] = true
		claims = append(claims, c.Name)
	}
	errs = append(errs, checkPodSpec(d, templateSpec, &spec.Template.Spec, claims)...)
	st := spec.UpdateStrategy
	at := []any{"spec", "updateStrategy", "rollingUpdate"}
	if st.Type == "OnDelete" && st.RollingUpdate != nil {
		errs = append(errs, d.errorf(at, "not allowed with updateStrategy type OnDelete"))
	}
	if ru := st.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		if isZero(ru.MaxUnavailable) {
			errs = append(errs, d.errorf(sub(at, "maxUnavailable"), "may not be 0"))
		}
		errs = append(errs, notOver100(d, sub(at, "maxUnavailable"), ru.MaxUnavailable)...)
	}
	return errs
}

// checkDaemonSet checks the selector and the update strategy.
func checkDaemonSet(d doc, spec *manifests.DaemonSetSpec) []Error {
	errs := checkSelector(d, []any{"spec", "selector"}, spec.Selector, spec.Template.Labels)
	errs = append(errs, checkPodSpec(d, templateSpec, &spec.Template.Spec, nil)...)
	st := spec.UpdateStrategy
	at := []any{"spec", "updateStrategy", "rollingUpdate"}
	if st.Type == "OnDelete" && st.RollingUpdate != nil {
		errs = append(errs, d.errorf(at, "not allowed with updateStrategy type OnDelete"))
	}
	if ru := st.RollingUpdate; ru != nil {
		if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) {
			errs = append(errs, d.errorf(sub(at, "maxUnavailable"), "may not be 0 when maxSurge is 0"))
		}
		errs = append(errs, notOver100(d, sub(at, "maxUnavailable"), ru.MaxUnavailable)...)
		errs = append(errs, notOver100(d, sub(at, "maxSurge"), ru.MaxSurge)...)
	}
	return errs
}

func notOver100(d doc, at []any, v *manifests.IntOrString) []Error {
	if v != nil && v.IsString && percent(v.StrVal) > 100 {
		return []Error{d.errorf(at, "may not be more than 100%%")}
	}
	return nil
}

// checkJob checks a Job's spec at path at (a Job's spec, or a CronJob's
// jobTemplate.spec) and defaults parallelism and completions as Kubernetes
// does: both 1 when both are unset; otherwise parallelism 1 when unset, and
// completions left unset, which makes a work-queue Job (it is done when
// one pod succeeds and the others have stopped).
func checkJob(d doc, at []any, spec *manifests.JobSpec) []Error {
	if spec.Completions == nil && spec.Parallelism == nil {
		spec.Completions = manifests.Ptr[int32](1)
	}
	if spec.Parallelism == nil {
		spec.Parallelism = manifests.Ptr[int32](1)
	}
	var errs []Error
	if spec.Selector != nil {
		errs = append(errs, checkSelector(d, sub(at, "selector"), spec.Selector, spec.Template.Labels)...)
	}
	if spec.CompletionMode == "Indexed" {
		// The Job controller runs NonIndexed Jobs only: refuse rather than
		// run an Indexed Job with the wrong semantics.
		errs = append(errs, d.errorf(sub(at, "completionMode"), "Indexed Jobs are not supported yet (use NonIndexed)"))
	}
	return append(errs, checkPodSpec(d, sub(at, "template", "spec"), &spec.Template.Spec, nil)...)
}

// checkCronJob checks the schedule with the parser the CronJob controller
// uses (robfig/cron's standard parser: five fields or a descriptor such as
// @hourly or @every 1h30m), the time zone with the time zone database, and
// the Job template.
func checkCronJob(d doc, spec *manifests.CronJobSpec) []Error {
	var errs []Error
	at := []any{"spec", "schedule"}
	if strings.Contains(spec.Schedule, "TZ") {
		errs = append(errs, d.errorf(at, "may not set TZ or CRON_TZ: use spec.timeZone"))
	} else if _, err := cron.ParseStandard(spec.Schedule); err != nil {
		errs = append(errs, d.errorf(at, "invalid schedule %q: %v", spec.Schedule, err))
	}
	if tz := spec.TimeZone; tz != nil {
		at := []any{"spec", "timeZone"}
		switch _, err := time.LoadLocation(*tz); {
		case *tz == "":
			errs = append(errs, d.errorf(at, "may not be empty: leave it out for the controller's local time"))
		case strings.EqualFold(*tz, "Local"):
			errs = append(errs, d.errorf(at, "must name a time zone such as Europe/Paris or UTC, not Local"))
		case err != nil:
			errs = append(errs, d.errorf(at, "unknown time zone %q", *tz))
		}
	}
	return append(errs, checkJob(d, []any{"spec", "jobTemplate", "spec"}, &spec.JobTemplate.Spec)...)
}

// HorizontalPodAutoscaler defaults, as in Kubernetes.
const (
	defaultCPUUtilization    = 80
	defaultScaleDownWindow   = 300
	autoscalingV1            = "autoscaling/v1"
	autoscalingV2            = "autoscaling/v2"
	cpuUtilizationTargetType = "Utilization"
)

// checkHPA checks an autoscaler: the fields of its apiVersion, the cpu
// metric (the only one Capstan follows), the replica bounds; and applies
// Kubernetes' defaults: a cpu utilization target of 80% when none is
// given, and, in autoscaling/v2, stabilization windows of 0 s up and
// 300 s down.
func checkHPA(d doc, o *manifests.HorizontalPodAutoscaler) []Error {
	var errs []Error
	s := &o.Spec
	if o.APIVersion == autoscalingV1 {
		for _, f := range []struct {
			name string
			set  bool
		}{{"metrics", len(s.Metrics) > 0}, {"behavior", s.Behavior != nil}} {
			if f.set {
				errs = append(errs, d.errorf([]any{"spec", f.name}, "allowed only with apiVersion %s (%s has targetCPUUtilizationPercentage)", autoscalingV2, autoscalingV1))
			}
		}
		if s.TargetCPUUtilizationPercentage == nil {
			s.TargetCPUUtilizationPercentage = manifests.Ptr[int32](defaultCPUUtilization)
		}
	} else {
		if s.TargetCPUUtilizationPercentage != nil {
			errs = append(errs, d.errorf([]any{"spec", "targetCPUUtilizationPercentage"}, "allowed only with apiVersion %s (%s has metrics)", autoscalingV1, autoscalingV2))
		}
		for i := range s.Metrics {
			errs = append(errs, checkMetric(d, []any{"spec", "metrics", i}, &s.Metrics[i])...)
		}
		if len(s.Metrics) == 0 {
			s.Metrics = []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{
				Name: "cpu", Target: manifests.MetricTarget{Type: cpuUtilizationTargetType, AverageUtilization: manifests.Ptr[int32](defaultCPUUtilization)},
			}}}
		}
		if s.Behavior == nil {
			s.Behavior = &manifests.HPABehavior{}
		}
		for _, r := range []struct {
			rules **manifests.HPAScalingRules
			def   int32
		}{{&s.Behavior.ScaleUp, 0}, {&s.Behavior.ScaleDown, defaultScaleDownWindow}} {
			if *r.rules == nil {
				*r.rules = &manifests.HPAScalingRules{}
			}
			if (*r.rules).StabilizationWindowSeconds == nil {
				(*r.rules).StabilizationWindowSeconds = manifests.Ptr(r.def)
			}
		}
	}
	if minR := manifests.Int32(s.MinReplicas, 1); s.MaxReplicas < minR {
		errs = append(errs, d.errorf([]any{"spec", "maxReplicas"}, "may not be less than minReplicas (%d)", minR))
	}
	return errs
}

// checkMetric refuses, by name, any metric but the cpu resource, and
// checks that its target has the value its type needs, and only that.
func checkMetric(d doc, at []any, m *manifests.MetricSpec) []Error {
	if m.Type != "Resource" {
		return []Error{d.errorf(sub(at, "type"), "metric type %q is not supported: Capstan scales on cpu only (want Resource)", m.Type)}
	}
	r := m.Resource
	if r == nil {
		return []Error{d.errorf(at, "type Resource needs resource")}
	}
	if r.Name != "cpu" {
		return []Error{d.errorf(sub(at, "resource", "name"), "resource %q is not supported: Capstan scales on cpu only (want cpu)", r.Name)}
	}
	tp := sub(at, "resource", "target")
	t := r.Target
	var errs []Error
	switch t.Type {
	case cpuUtilizationTargetType:
		if t.AverageUtilization == nil {
			errs = append(errs, d.errorf(tp, "target type Utilization needs averageUtilization"))
		}
		if t.AverageValue != nil {
			errs = append(errs, d.errorf(sub(tp, "averageValue"), "not allowed with target type Utilization"))
		}
	case "AverageValue":
		if t.AverageValue == nil {
			errs = append(errs, d.errorf(tp, "target type AverageValue needs averageValue"))
		}
		if t.AverageUtilization != nil {
			errs = append(errs, d.errorf(sub(tp, "averageUtilization"), "not allowed with target type AverageValue"))
		}
	}
	return errs
}
