package schema

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"

	"github.com/capstan-io/capstan/manifests"
)

// checkEncoded checks the base64 values of Secret data and ConfigMap
// binaryData. It runs before decoding, which would otherwise fail on them
// without naming the key.
func checkEncoded(d doc, kind string) []Error {
	var field string
	switch kind {
	case "Secret":
		field = "data"
	case "ConfigMap":
		field = "binaryData"
	default:
		return nil
	}
	it, err := d.v.LookupPath(cue.MakePath(cue.Str(field))).Fields()
	if err != nil {
		return nil
	}
	var errs []Error
	for it.Next() {
		s, err := it.Value().String()
		if err != nil {
			continue // the schema reports a value that is not a string
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			key := it.Selector().Unquoted()
			errs = append(errs, d.errorf([]any{field, key}, "value of key %q is not valid base64", key))
		}
	}
	return errs
}

// check runs the checks that span fields or need Go, on an object that
// passed the schema, and finishes decoding: a Secret's stringData is merged
// into its data, as the Kubernetes API server does.
func check(d doc, obj manifests.Object) []Error {
	var errs []Error
	switch o := obj.(type) {
	case *manifests.Secret:
		if len(o.StringData) > 0 && o.Data == nil {
			o.Data = map[string][]byte{}
		}
		for k, v := range o.StringData {
			o.Data[k] = []byte(v)
		}
		o.StringData = nil
	case *manifests.ConfigMap:
		for k := range o.BinaryData {
			if _, ok := o.Data[k]; ok {
				errs = append(errs, d.errorf([]any{"binaryData", k}, "key %q is also in data", k))
			}
		}
	case *manifests.Pod:
		errs = append(errs, checkPodSpec(d, []any{"spec"}, &o.Spec, nil)...)
	case *manifests.ReplicaSet:
		errs = append(errs, checkSelector(d, []any{"spec", "selector"}, o.Spec.Selector, o.Spec.Template.Labels)...)
		errs = append(errs, checkPodSpec(d, templateSpec, &o.Spec.Template.Spec, nil)...)
	case *manifests.Deployment:
		errs = append(errs, checkSelector(d, []any{"spec", "selector"}, o.Spec.Selector, o.Spec.Template.Labels)...)
		errs = append(errs, checkPodSpec(d, templateSpec, &o.Spec.Template.Spec, nil)...)
		errs = append(errs, checkDeployment(d, &o.Spec)...)
	case *manifests.ReplicationController:
		errs = append(errs, checkReplicationController(d, &o.Spec)...)
	case *manifests.StatefulSet:
		errs = append(errs, checkStatefulSet(d, &o.Spec)...)
	case *manifests.DaemonSet:
		errs = append(errs, checkDaemonSet(d, &o.Spec)...)
	case *manifests.Job:
		errs = append(errs, checkJob(d, []any{"spec"}, &o.Spec)...)
	case *manifests.CronJob:
		errs = append(errs, checkCronJob(d, &o.Spec)...)
	case *manifests.HorizontalPodAutoscaler:
		errs = append(errs, checkHPA(d, o)...)
	case *manifests.Service:
		errs = append(errs, checkService(d, &o.Spec)...)
	case *manifests.Source: // check_source.go
		errs = append(errs, checkSource(d, o)...)
	case *manifests.Notifier:
		errs = append(errs, checkNotifier(d, o)...)
	}
	return errs
}

// templateSpec is the path of a controller's pod spec.
var templateSpec = []any{"spec", "template", "spec"}

// checkSelector checks that a controller's selector, at path at, is well
// formed, not empty, and selects the pods of its own template.
func checkSelector(d doc, at []any, sel *manifests.LabelSelector, labels map[string]string) []Error {
	if sel == nil || len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		return []Error{d.errorf(at, "empty selector: it would select every pod in the namespace")}
	}
	var errs []Error
	for i, r := range sel.MatchExpressions {
		p := sub(at, "matchExpressions", i, "values")
		switch r.Operator {
		case manifests.OpIn, manifests.OpNotIn:
			if len(r.Values) == 0 {
				errs = append(errs, d.errorf(p, "operator %s needs values", r.Operator))
			}
		case manifests.OpExists, manifests.OpDoesNotExist:
			if len(r.Values) != 0 {
				errs = append(errs, d.errorf(p, "operator %s takes no values", r.Operator))
			}
		}
	}
	if len(errs) == 0 && !sel.Matches(labels) {
		errs = append(errs, d.errorf(at, "selector does not match the template's labels %s", formatLabels(labels)))
	}
	return errs
}

func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// checkDeployment checks the strategy and the progress deadline.
func checkDeployment(d doc, spec *manifests.DeploymentSpec) []Error {
	var errs []Error
	st := spec.Strategy
	at := []any{"spec", "strategy", "rollingUpdate"}
	if st.Type == manifests.RecreateStrategy && st.RollingUpdate != nil {
		errs = append(errs, d.errorf(at, "not allowed with strategy type Recreate"))
	}
	if ru := st.RollingUpdate; ru != nil && st.Type == manifests.RollingUpdateStrategy {
		if isZero(ru.MaxSurge) && isZero(ru.MaxUnavailable) {
			errs = append(errs, d.errorf(append(at, "maxUnavailable"), "may not be 0 when maxSurge is 0"))
		}
		if v := ru.MaxUnavailable; v != nil && v.IsString && percent(v.StrVal) > 100 {
			errs = append(errs, d.errorf(append(at, "maxUnavailable"), "may not be more than 100%%"))
		}
	}
	if pds := spec.ProgressDeadlineSeconds; pds != nil && *pds <= spec.MinReadySeconds {
		if d.has([]any{"spec", "progressDeadlineSeconds"}) {
			errs = append(errs, d.errorf([]any{"spec", "progressDeadlineSeconds"}, "must be more than minReadySeconds (%d)", spec.MinReadySeconds))
		} else {
			errs = append(errs, d.errorf([]any{"spec", "minReadySeconds"}, "must be less than progressDeadlineSeconds (%d by default)", *pds))
		}
	}
	return errs
}

func isZero(v *manifests.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.IsString {
		return percent(v.StrVal) == 0
	}
	return v.IntVal == 0
}

// percent returns the number of a percentage the schema has checked.
func percent(s string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(s, "%"))
	return n
}
