package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/manifests"
)

func require_NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
}

func readFiles(t testing.TB, paths ...string) []manifests.File {
	t.Helper()
	var files []manifests.File
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require_NoError(t, err)
		files = append(files, manifests.File{Path: p, Data: data})
	}
	return files
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	objs, err := LoadPaths("testdata/valid")
	require_NoError(t, err)
	var got []string
	for _, o := range objs {
		got = append(got, fmt.Sprintf("%T %s", o, manifests.KeyOf(o)))
	}
	want := []string{
		"*manifests.Namespace Namespace._.shop",
		"*manifests.ConfigMap ConfigMap.shop.shop-config",
		"*manifests.Secret Secret.shop.shop-secret",
		"*manifests.Pod Pod.shop.debug",
		"*manifests.Deployment Deployment.default.web",
		"*manifests.ConfigMap ConfigMap.default.from-json",
		"*manifests.Deployment Deployment.shop.api",
		"*manifests.ReplicaSet ReplicaSet.shop.cache",
		"*manifests.Service Service.default.web",
		"*manifests.Service Service.default.db",
		"*manifests.Service Service.default.both",
		"*manifests.Deployment Deployment.shop.mailer",
		"*manifests.Deployment Deployment.shop.billing",
		"*manifests.ConfigMap ConfigMap.shop.workers",
		"*manifests.ReplicationController ReplicationController.default.legacy",
		"*manifests.StatefulSet StatefulSet.default.db",
		"*manifests.DaemonSet DaemonSet.default.agent",
		"*manifests.Job Job.default.once",
		"*manifests.Job Job.default.queue",
		"*manifests.CronJob CronJob.default.hourly",
		"*manifests.CronJob CronJob.default.every",
		"*manifests.HorizontalPodAutoscaler HorizontalPodAutoscaler.default.web",
		"*manifests.HorizontalPodAutoscaler HorizontalPodAutoscaler.default.web-v1",
		"*manifests.HorizontalPodAutoscaler HorizontalPodAutoscaler.default.partial",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("objects:\n got %q\nwant %q", got, want)
	}
	for _, o := range objs {
		if tm := o.GetTypeMeta(); tm.Kind == "" || tm.APIVersion == "" {
			t.Errorf("%s: TypeMeta not set: %+v", manifests.KeyOf(o), tm)
		}
	}
	secret := objs[2].(*manifests.Secret)
	if string(secret.Data["password"]) != "hunter2" || string(secret.Data["token"]) != "s3cr3t" || secret.StringData != nil {
		t.Errorf("secret data: got %q, stringData %q", secret.Data, secret.StringData)
	}
	if cm := objs[1].(*manifests.ConfigMap); string(cm.BinaryData["logo.png"]) != "\x89PNG\r\n\x1a\n" {
		t.Errorf("binaryData: got %q", cm.BinaryData["logo.png"])
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	objs, err := LoadPaths("testdata/valid/deployment.yaml", "testdata/valid/app.yaml", "testdata/valid/list.json")
	require_NoError(t, err)
	byKey := map[string]manifests.Object{}
	for _, o := range objs {
		byKey[manifests.KeyOf(o)] = o
	}
	d := byKey["Deployment.default.web"].(*manifests.Deployment)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"namespace", d.Namespace, "default"},
		{"replicas", manifests.Int32(d.Spec.Replicas, -1), int32(1)},
		{"strategy type", d.Spec.Strategy.Type, "RollingUpdate"},
		{"maxSurge", *d.Spec.Strategy.RollingUpdate.MaxSurge, *manifests.FromString("25%")},
		{"maxUnavailable", *d.Spec.Strategy.RollingUpdate.MaxUnavailable, *manifests.FromString("25%")},
		{"revisionHistoryLimit", manifests.Int32(d.Spec.RevisionHistoryLimit, -1), int32(10)},
		{"progressDeadlineSeconds", manifests.Int32(d.Spec.ProgressDeadlineSeconds, -1), int32(600)},
		{"restartPolicy", pod.RestartPolicy, "Always"},
		{"terminationGracePeriodSeconds", *pod.TerminationGracePeriodSeconds, int64(30)},
		{"imagePullPolicy", c.ImagePullPolicy, "IfNotPresent"},
		{"protocol", c.Ports[0].Protocol, "TCP"},
		{"secret type", byKey["Secret.shop.shop-secret"].(*manifests.Secret).Type, "Opaque"},
		{"pod restartPolicy kept", byKey["Pod.shop.debug"].(*manifests.Pod).Spec.RestartPolicy, "Never"},
		{"namespace has no namespace", byKey["Namespace._.shop"].GetObjectMeta().Namespace, ""},
		{"Recreate has no rollingUpdate", byKey["Deployment.shop.api"].(*manifests.Deployment).Spec.Strategy.RollingUpdate, (*manifests.RollingUpdateDeployment)(nil)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

// TestWorkloadDefaults checks the defaults of the new kinds and of the pod
// features, those of defaults.cue and those the loader applies in Go.
func TestWorkloadDefaults(t *testing.T) {
	t.Parallel()
	objs, err := LoadPaths("testdata/valid/workloads.yaml")
	require_NoError(t, err)
	byKey := map[string]manifests.Object{}
	for _, o := range objs {
		byKey[manifests.KeyOf(o)] = o
	}
	rc := byKey["ReplicationController.default.legacy"].(*manifests.ReplicationController)
	sts := byKey["StatefulSet.default.db"].(*manifests.StatefulSet)
	ds := byKey["DaemonSet.default.agent"].(*manifests.DaemonSet)
	once := byKey["Job.default.once"].(*manifests.Job)
	queue := byKey["Job.default.queue"].(*manifests.Job)
	hourly := byKey["CronJob.default.hourly"].(*manifests.CronJob)
	every := byKey["CronJob.default.every"].(*manifests.CronJob)
	hpa := byKey["HorizontalPodAutoscaler.default.web"].(*manifests.HorizontalPodAutoscaler)
	hpa1 := byKey["HorizontalPodAutoscaler.default.web-v1"].(*manifests.HorizontalPodAutoscaler)
	partial := byKey["HorizontalPodAutoscaler.default.partial"].(*manifests.HorizontalPodAutoscaler)
	db := sts.Spec.Template.Spec.Containers[0]
	i32 := func(p *int32) any {
		if p == nil {
			return nil
		}
		return *p
	}
	cpu80 := []manifests.MetricSpec{{Type: "Resource", Resource: &manifests.ResourceMetricSource{Name: "cpu",
		Target: manifests.MetricTarget{Type: "Utilization", AverageUtilization: manifests.Ptr[int32](80)}}}}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"rc selector is the template's labels", rc.Spec.Selector, map[string]string{"app": "legacy"}},
		{"rc replicas", i32(rc.Spec.Replicas), int32(1)},
		{"rc restartPolicy", rc.Spec.Template.Spec.RestartPolicy, "Always"},
		{"sts replicas", i32(sts.Spec.Replicas), int32(1)},
		{"sts podManagementPolicy", sts.Spec.PodManagementPolicy, "OrderedReady"},
		{"sts updateStrategy", sts.Spec.UpdateStrategy, manifests.StatefulSetUpdateStrategy{Type: "RollingUpdate",
			RollingUpdate: &manifests.RollingUpdateStatefulSetStrategy{Partition: manifests.Ptr[int32](0)}}},
		{"sts revisionHistoryLimit", i32(sts.Spec.RevisionHistoryLimit), int32(10)},
		{"sts serviceName optional", sts.Spec.ServiceName, ""},
		{"readiness probe defaults", *db.ReadinessProbe, manifests.Probe{
			ProbeHandler:   manifests.ProbeHandler{TCPSocket: &manifests.TCPSocketAction{Port: *manifests.FromString("pg")}},
			TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}},
		{"httpGet defaults", *db.LivenessProbe.HTTPGet, manifests.HTTPGetAction{Path: "/", Port: *manifests.FromInt(8080), Scheme: "HTTP"}},
		{"ds updateStrategy", ds.Spec.UpdateStrategy, manifests.DaemonSetUpdateStrategy{Type: "RollingUpdate",
			RollingUpdate: &manifests.RollingUpdateDaemonSet{MaxUnavailable: manifests.FromInt(1), MaxSurge: manifests.FromInt(0)}}},
		{"ds revisionHistoryLimit", i32(ds.Spec.RevisionHistoryLimit), int32(10)},
		{"configMap defaultMode", *ds.Spec.Template.Spec.Volumes[1].ConfigMap.DefaultMode, int32(0o644)},
		{"hostPath type", ds.Spec.Template.Spec.Volumes[0].HostPath.Type, ""},
		{"job parallelism", i32(once.Spec.Parallelism), int32(1)},
		{"job completions", i32(once.Spec.Completions), int32(1)},
		{"job backoffLimit", i32(once.Spec.BackoffLimit), int32(6)},
		{"job completionMode", once.Spec.CompletionMode, "NonIndexed"},
		{"job suspend", *once.Spec.Suspend, false},
		{"job restartPolicy kept", once.Spec.Template.Spec.RestartPolicy, "Never"},
		{"job selector not required", once.Spec.Selector, (*manifests.LabelSelector)(nil)},
		{"init container pull policy", once.Spec.Template.Spec.InitContainers[0].ImagePullPolicy, "IfNotPresent"},
		{"hook httpGet defaults", once.Spec.Template.Spec.Containers[0].Lifecycle.PreStop.HTTPGet.Path, "/"},
		{"work queue keeps completions unset", i32(queue.Spec.Completions), nil},
		{"work queue parallelism", i32(queue.Spec.Parallelism), int32(3)},
		{"cronjob concurrencyPolicy", hourly.Spec.ConcurrencyPolicy, "Allow"},
		{"cronjob suspend", *hourly.Spec.Suspend, false},
		{"cronjob successfulJobsHistoryLimit", i32(hourly.Spec.SuccessfulJobsHistoryLimit), int32(3)},
		{"cronjob failedJobsHistoryLimit", i32(hourly.Spec.FailedJobsHistoryLimit), int32(1)},
		{"cronjob job backoffLimit", i32(hourly.Spec.JobTemplate.Spec.BackoffLimit), int32(6)},
		{"cronjob job completions", i32(hourly.Spec.JobTemplate.Spec.Completions), int32(1)},
		{"cronjob completions only: parallelism 1", i32(every.Spec.JobTemplate.Spec.Parallelism), int32(1)},
		{"cronjob pod restartPolicy kept", every.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy, "Never"},
		{"hpa minReplicas", i32(hpa.Spec.MinReplicas), int32(1)},
		{"hpa v2 metrics", hpa.Spec.Metrics, cpu80},
		{"hpa v2 behavior", *hpa.Spec.Behavior, manifests.HPABehavior{
			ScaleUp:   &manifests.HPAScalingRules{StabilizationWindowSeconds: manifests.Ptr[int32](0)},
			ScaleDown: &manifests.HPAScalingRules{StabilizationWindowSeconds: manifests.Ptr[int32](300)}}},
		{"hpa v2 partial behavior", i32(partial.Spec.Behavior.ScaleDown.StabilizationWindowSeconds), int32(60)},
		{"hpa v2 partial behavior, scaleUp", i32(partial.Spec.Behavior.ScaleUp.StabilizationWindowSeconds), int32(0)},
		{"hpa v1 target", i32(hpa1.Spec.TargetCPUUtilizationPercentage), int32(80)},
		{"hpa v1 has no metrics", len(hpa1.Spec.Metrics), 0},
		{"hpa v1 has no behavior", hpa1.Spec.Behavior, (*manifests.HPABehavior)(nil)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	// YAML's octal modes (0644) read as Kubernetes reads them.
	objs, err = LoadPaths("testdata/maximal/pod.yaml")
	require_NoError(t, err)
	if m := objs[0].(*manifests.Pod).Spec.Volumes[2].ConfigMap.DefaultMode; m == nil || *m != 0o644 {
		t.Errorf("defaultMode 0644: got %v", m)
	}
}

// TestServiceDefaults checks a Service's defaults: type ClusterIP,
// protocol TCP, targetPort the port, sessionAffinity None, and a given
// targetPort or protocol kept.
func TestServiceDefaults(t *testing.T) {
	t.Parallel()
	objs, err := LoadPaths("testdata/valid/services.yaml")
	require_NoError(t, err)
	byKey := map[string]*manifests.Service{}
	for _, o := range objs {
		byKey[manifests.KeyOf(o)] = o.(*manifests.Service)
	}
	web, db, both := byKey["Service.default.web"], byKey["Service.default.db"], byKey["Service.default.both"]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"type", web.Spec.Type, manifests.ServiceClusterIP},
		{"sessionAffinity", web.Spec.SessionAffinity, "None"},
		{"port defaults", web.Spec.Ports, []manifests.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: manifests.IntOrString{IntVal: 80}}}},
		{"clusterIP left to the allocator", web.Spec.ClusterIP, ""},
		{"headless keeps None", db.Spec.ClusterIP, manifests.ClusterIPNone},
		{"headless needs no ports", len(db.Spec.Ports), 0},
		{"named targetPort kept", both.Spec.Ports[0].TargetPort, *manifests.FromString("http")},
		{"UDP kept, targetPort defaulted", both.Spec.Ports[1], manifests.ServicePort{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: manifests.IntOrString{IntVal: 53}}},
		{"nodePort left to the allocator", both.Spec.Ports[0].NodePort, int32(0)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

// want is one expected error: position, field and a part of the message.
type want struct {
	file      string
	line, col int
	field     string
	msg       string
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	const dir = "testdata/invalid/"
	for _, tc := range []struct {
		files []string
		want  []want
	}{
		{[]string{"unknown-field.yaml"}, []want{
			{"unknown-field.yaml", 12, 7, "spec.template.spec.tolerations", `field "tolerations" is not allowed`},
			{"unknown-field.yaml", 16, 11, "spec.template.spec.containers[0].imagee", `field "imagee" is not allowed`},
		}},
		{[]string{"wrong-type.yaml"}, []want{
			{"wrong-type.yaml", 6, 3, "spec.replicas", `conflicting values "three" and int32`},
		}},
		{[]string{"bad-values.yaml"}, []want{
			{"bad-values.yaml", 4, 3, "metadata.name", `invalid value "Bad_Name" (want a DNS subdomain`},
			{"bad-values.yaml", 6, 3, "spec.restartPolicy", `invalid value "Sometimes" (want "Always" or "Never" or "OnFailure")`},
			{"bad-values.yaml", 11, 11, "spec.containers[0].ports[0].containerPort", "invalid value 70000 (out of bound <=65535)"},
			{"bad-values.yaml", 12, 11, "spec.containers[0].ports[0].protocol", `invalid value "HTTP" (want "SCTP" or "TCP" or "UDP")`},
			{"bad-values.yaml", 15, 11, "spec.containers[0].resources.limits.cpu", `invalid value "12 apples" (want a quantity`},
		}},
		{[]string{"selector.yaml"}, []want{
			{"selector.yaml", 6, 3, "spec.selector", "selector does not match the template's labels {app=api}"},
		}},
		{[]string{"status.yaml"}, []want{
			{"status.yaml", 5, 3, "metadata.uid", `field "uid" is set by Capstan`},
			{"status.yaml", 6, 1, "status", `field "status" is set by Capstan`},
		}},
		{[]string{"secret.yaml"}, []want{
			{"secret.yaml", 7, 3, "data.password", `value of key "password" is not valid base64`},
		}},
		{[]string{"syntax.yaml"}, []want{
			{"syntax.yaml", 5, 0, "", "syntax error: did not find expected ',' or ']'"},
		}},
		{[]string{"kinds.yaml"}, []want{
			{"kinds.yaml", 2, 1, "kind", `unknown kind "Ingress"`},
			{"kinds.yaml", 6, 1, "apiVersion", `apiVersion "v1" is wrong for kind Deployment (want apps/v1)`},
		}},
		{[]string{"duplicate/a.yaml", "duplicate/b.json"}, []want{
			{"duplicate/b.json", 4, 41, "metadata.name", `duplicate ConfigMap "default/settings": also declared at testdata/invalid/duplicate/a.yaml:4:3`},
		}},
		{[]string{"invalid.cue"}, []want{
			{"invalid.cue", 5, 8, "data.size", "conflicting values 3 and string"},
		}},
		{[]string{"service.yaml"}, []want{
			{"service.yaml", 6, 3, "spec.type", `invalid value "LoadBalancer" (want "ClusterIP" or "ExternalName" or "NodePort")`},
			{"service.yaml", 8, 18, "spec.ports[0].nodePort", "invalid value 80 (out of bound >=30000)"},
			{"service.yaml", 16, 3, "spec.externalName", "may only be set for type ExternalName"},
			{"service.yaml", 17, 3, "spec.clusterIP", `invalid value "10.96.0.300" (want "", "None" or an IP address)`},
			{"service.yaml", 19, 7, "spec.ports[0]", "needs a name: a service with more than one port names each"},
			{"service.yaml", 19, 18, "spec.ports[0].nodePort", "may only be set for type NodePort"},
			{"service.yaml", 20, 20, "spec.ports[1].port", "duplicate port 80/TCP"},
			{"service.yaml", 21, 8, "spec.ports[2].name", `duplicate port name "http"`},
			{"service.yaml", 21, 30, "spec.ports[2].protocol", "SCTP is not supported (want TCP or UDP)"},
			{"service.yaml", 28, 3, "spec.type", "type ExternalName needs spec.externalName"},
			{"service.yaml", 29, 3, "spec.clusterIP", "may not be set for type ExternalName"},
			{"service.yaml", 37, 3, "spec.clusterIP", `"None" (headless) is not allowed for type NodePort`},
			{"service.yaml", 38, 16, "spec.clusterIPs[0]", "must equal spec.clusterIP (None)"},
			{"service.yaml", 40, 7, "spec.ports[0]", "needs a name"},
			{"service.yaml", 41, 27, "spec.ports[1].nodePort", "duplicate node port 30080/TCP"},
			{"service.yaml", 49, 3, "spec.sessionAffinity", `conflicting values "ClientIP" and "None"`},
		}},
		{[]string{"probes.yaml"}, []want{
			{"probes.yaml", 11, 9, "spec.containers[0].livenessProbe.httpGet", "may not be set with exec: a probe has exactly one handler"},
			{"probes.yaml", 13, 9, "spec.containers[0].livenessProbe.successThreshold", "must be 1 for a liveness probe"},
			{"probes.yaml", 15, 21, "spec.containers[0].readinessProbe.tcpSocket.port", `no port named "metrics" in the container's ports`},
			{"probes.yaml", 16, 9, "spec.containers[0].readinessProbe.terminationGracePeriodSeconds", "not allowed on a readiness probe"},
			{"probes.yaml", 17, 7, "spec.containers[0].startupProbe", "must set one of exec, httpGet or tcpSocket"},
			{"probes.yaml", 20, 9, "spec.containers[0].lifecycle.postStart", "must set one of exec, httpGet or sleep"},
			{"probes.yaml", 22, 11, "spec.containers[0].lifecycle.preStop.sleep", "may not be set with exec: a lifecycle hook has exactly one"},
			{"probes.yaml", 22, 19, "spec.containers[0].lifecycle.preStop.sleep.seconds", "may not be more than terminationGracePeriodSeconds (30)"},
			{"probes.yaml", 34, 19, "spec.containers[0].livenessProbe.httpGet.port", "invalid value 0 (out of bound >=1)"},
			{"probes.yaml", 34, 28, "spec.containers[0].livenessProbe.httpGet.scheme", `invalid value "FTP" (want "HTTP" or "HTTPS")`},
			{"probes.yaml", 35, 9, "spec.containers[0].livenessProbe.timeoutSeconds", "invalid value -1 (out of bound >=0)"},
			{"probes.yaml", 37, 21, "spec.containers[0].readinessProbe.tcpSocket.port", `invalid value "Not_A_Name" (want a DNS label: lower-case`},
			{"probes.yaml", 39, 16, "spec.containers[0].startupProbe.exec.command", "needs at least one item"},
		}},
		{[]string{"env.yaml"}, []want{
			{"env.yaml", 12, 11, "spec.containers[0].env[0].valueFrom", "may not be set with a non-empty value"},
			{"env.yaml", 15, 11, "spec.containers[0].env[1].valueFrom", "must set one of configMapKeyRef, secretKeyRef, fieldRef or"},
			{"env.yaml", 19, 13, "spec.containers[0].env[2].valueFrom.secretKeyRef", "may not be set with configMapKeyRef: valueFrom has exactly"},
			{"env.yaml", 22, 24, "spec.containers[0].env[3].valueFrom.fieldRef.fieldPath", `unsupported field path "spec.containers" for an environment`},
			{"env.yaml", 25, 24, "spec.containers[0].env[4].valueFrom.fieldRef.fieldPath", `unsupported field path "metadata.labels" for an environment`},
			{"env.yaml", 28, 24, "spec.containers[0].env[5].valueFrom.fieldRef.fieldPath", `invalid field path "spec.nodeName['x']": only`},
			{"env.yaml", 31, 32, "spec.containers[0].env[6].valueFrom.resourceFieldRef.containerName", `no container named "db" in the pod`},
			{"env.yaml", 31, 78, "spec.containers[0].env[6].valueFrom.resourceFieldRef.divisor", "invalid divisor 1m for memory (want one of 1, 1k, 1M, 1G,"},
			{"env.yaml", 34, 11, "spec.containers[0].envFrom[0].secretRef", "may not be set with configMapRef: an envFrom entry has"},
			{"env.yaml", 35, 11, "spec.containers[0].envFrom[1]", "must set one of configMapRef or secretRef"},
			{"env.yaml", 48, 32, "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource", `invalid value "limits.gpu" (want "limits.cpu" or`},
			{"env.yaml", 51, 24, "spec.containers[0].env[1].valueFrom.fieldRef.apiVersion", `conflicting values "v1" and "v2"`},
			{"env.yaml", 53, 11, "spec.containers[0].envFrom[0].prefix", `invalid value "1bad prefix" (want letters, digits, '-', '_'`},
		}},
		{[]string{"volumes.yaml"}, []want{
			{"volumes.yaml", 9, 7, "spec.volumes[1].name", `duplicate volume name "data"`},
			{"volumes.yaml", 11, 7, "spec.volumes[2]", "must set one of emptyDir, hostPath, configMap, secret,"},
			{"volumes.yaml", 14, 7, "spec.volumes[3].persistentVolumeClaim", "may not be set with emptyDir: a volume has exactly one"},
			{"volumes.yaml", 19, 22, "spec.volumes[4].configMap.items[0].path", `"/etc/a" must be a relative path`},
			{"volumes.yaml", 20, 22, "spec.volumes[4].configMap.items[1].path", `"x/../../b" must not contain '..'`},
			{"volumes.yaml", 21, 22, "spec.volumes[4].configMap.items[2].path", "must not start with '..'"},
			{"volumes.yaml", 26, 24, "spec.volumes[5].downwardAPI.items[0].fieldRef.fieldPath", `unsupported field path "spec.nodeName" for a downwardAPI`},
			{"volumes.yaml", 28, 13, "spec.volumes[5].downwardAPI.items[1].resourceFieldRef.containerName", "required in a downwardAPI volume"},
			{"volumes.yaml", 29, 13, "spec.volumes[5].downwardAPI.items[2]", "must set one of fieldRef or resourceFieldRef"},
			{"volumes.yaml", 35, 12, "spec.containers[0].volumeMounts[1].name", `volume "missing" is not declared in spec.volumes`},
			{"volumes.yaml", 36, 23, "spec.containers[0].volumeMounts[2].mountPath", `duplicate mountPath "/data"`},
			{"volumes.yaml", 37, 40, "spec.containers[0].volumeMounts[3].subPath", `"/abs" must be a relative path`},
			{"volumes.yaml", 45, 7, "spec.volumes[0].name", `invalid value "Bad_Name" (want a DNS label: lower-case`},
			{"volumes.yaml", 46, 18, "spec.volumes[0].emptyDir.medium", `invalid value "Disk" (want "" or "Memory")`},
			{"volumes.yaml", 48, 18, "spec.volumes[1].hostPath.path", `invalid value "var/log" (want an absolute path)`},
			{"volumes.yaml", 48, 33, "spec.volumes[1].hostPath.type", `invalid value "Folder" (want "" or "BlockDevice" or`},
			{"volumes.yaml", 50, 28, "spec.volumes[2].configMap.defaultMode", "invalid value 512 (out of bound <=511)"},
			{"volumes.yaml", 50, 74, "spec.volumes[2].configMap.items[0].mode", "invalid value -1 (out of bound >=0)"},
			{"volumes.yaml", 57, 24, "spec.containers[0].volumeMounts[0].mountPath", `invalid value "relative/path" (want an absolute path)`},
		}},
		{[]string{"init-containers.yaml"}, []want{
			{"init-containers.yaml", 9, 7, "spec.initContainers[0].livenessProbe", "not allowed on an init container: Kubernetes allows probes"},
			{"init-containers.yaml", 10, 7, "spec.initContainers[0].readinessProbe", "not allowed on an init container: Kubernetes allows probes"},
			{"init-containers.yaml", 11, 7, "spec.initContainers[0].startupProbe", "not allowed on an init container: Kubernetes allows probes"},
			{"init-containers.yaml", 12, 7, "spec.initContainers[0].lifecycle", "not allowed on an init container: Kubernetes allows"},
			{"init-containers.yaml", 16, 7, "spec.containers[0].name", `duplicate container name "web"`},
			{"init-containers.yaml", 27, 7, "spec.initContainers[0].restartPolicy", `field "restartPolicy" is not allowed: Capstan does not`},
			{"init-containers.yaml", 31, 7, "spec.containers[0].restartPolicy", `field "restartPolicy" is not allowed: Capstan does not`},
		}},
		{[]string{"pod-fields.yaml"}, []want{
			{"pod-fields.yaml", 6, 3, "spec.subdomain", `invalid value "Not.A.Label" (want a DNS label: lower-case`},
			{"pod-fields.yaml", 7, 3, "spec.activeDeadlineSeconds", "invalid value 0 (out of bound >=1)"},
			{"pod-fields.yaml", 9, 7, "spec.hostAliases[0].ip", `invalid value "300.1.1.1" (want an IP address)`},
			{"pod-fields.yaml", 22, 7, "spec.hostAliases[0].ip", "field is required but not present"},
		}},
		{[]string{"statefulset.yaml"}, []want{
			{"statefulset.yaml", 6, 3, "spec.selector", "selector does not match the template's labels {app=postgres}"},
			{"statefulset.yaml", 17, 16, "spec.template.spec.containers[0].volumeMounts[1].name", `volume "logs" is not declared in spec.volumes nor in`},
			{"statefulset.yaml", 21, 18, "spec.volumeClaimTemplates[1].metadata.name", `duplicate claim template name "data"`},
			{"statefulset.yaml", 25, 5, "spec.updateStrategy.rollingUpdate", "not allowed with updateStrategy type OnDelete"},
			{"statefulset.yaml", 38, 7, "spec.template.spec.restartPolicy", `conflicting values "Always" and "OnFailure"`},
			{"statefulset.yaml", 42, 3, "spec.podManagementPolicy", `invalid value "Sequential" (want "OrderedReady" or`},
			{"statefulset.yaml", 44, 5, "spec.updateStrategy.type", `invalid value "Rolling" (want "OnDelete" or "RollingUpdate")`},
			{"statefulset.yaml", 47, 14, "spec.volumeClaimTemplates[0].spec.accessModes", "needs at least one item"},
			{"statefulset.yaml", 64, 21, "spec.updateStrategy.rollingUpdate.maxUnavailable", "may not be 0"},
		}},
		{[]string{"daemonset.yaml"}, []want{
			{"daemonset.yaml", 6, 3, "spec.selector", "selector does not match the template's labels {app=other}"},
			{"daemonset.yaml", 17, 5, "spec.updateStrategy.rollingUpdate", "not allowed with updateStrategy type OnDelete"},
			{"daemonset.yaml", 34, 40, "spec.updateStrategy.rollingUpdate.maxSurge", "may not be more than 100%"},
		}},
		{[]string{"job.yaml"}, []want{
			{"job.yaml", 7, 5, "spec.template.spec.restartPolicy", "field is required but not present"},
			{"job.yaml", 17, 3, "spec.completionMode", `invalid value "Sometimes" (want "Indexed" or "NonIndexed")`},
			{"job.yaml", 18, 3, "spec.backoffLimit", "invalid value -1 (out of bound >=0)"},
			{"job.yaml", 21, 7, "spec.template.spec.restartPolicy", `invalid value "Always" (want "Never" or "OnFailure")`},
			{"job.yaml", 32, 3, "spec.completionMode", "Indexed Jobs are not supported yet"},
			{"job.yaml", 33, 3, "spec.selector", "selector does not match the template's labels {job=other}"},
		}},
		{[]string{"cronjob.yaml"}, []want{
			{"cronjob.yaml", 6, 3, "spec.schedule", `invalid schedule "61 * * * *": end of range (61) above`},
			{"cronjob.yaml", 7, 3, "spec.timeZone", `unknown time zone "Mars/Olympus"`},
			{"cronjob.yaml", 22, 3, "spec.schedule", "may not set TZ or CRON_TZ: use spec.timeZone"},
			{"cronjob.yaml", 23, 3, "spec.timeZone", "must name a time zone such as Europe/Paris or UTC, not Local"},
			{"cronjob.yaml", 38, 3, "spec.schedule", `invalid schedule "0 0 * * * *": expected exactly 5 fields,`},
			{"cronjob.yaml", 39, 3, "spec.timeZone", "may not be empty: leave it out for the controller's local"},
			{"cronjob.yaml", 42, 7, "spec.jobTemplate.spec.completionMode", "Indexed Jobs are not supported yet"},
			{"cronjob.yaml", 54, 3, "metadata.name", "invalid value"},
			{"cronjob.yaml", 57, 3, "spec.concurrencyPolicy", `invalid value "Sometimes" (want "Allow" or "Forbid" or`},
			{"cronjob.yaml", 62, 11, "spec.jobTemplate.spec.template.spec.restartPolicy", `invalid value "Always" (want "Never" or "OnFailure")`},
		}},
		{[]string{"replicationcontroller.yaml"}, []want{
			{"replicationcontroller.yaml", 6, 3, "spec.selector", "selector does not match the template's labels {app=api}"},
			{"replicationcontroller.yaml", 22, 7, "spec.template.metadata.labels", "may not be empty: the selector defaults to them"},
			{"replicationcontroller.yaml", 35, 5, "spec.selector.matchLabels", `conflicting values {app:"web"} and`},
		}},
		{[]string{"hpa.yaml"}, []want{
			{"hpa.yaml", 8, 3, "spec.maxReplicas", "may not be less than minReplicas (5)"},
			{"hpa.yaml", 9, 3, "spec.targetCPUUtilizationPercentage", "allowed only with apiVersion autoscaling/v1 (autoscaling/v2"},
			{"hpa.yaml", 11, 7, "spec.metrics[0].type", `metric type "Pods" is not supported: Capstan scales on cpu`},
			{"hpa.yaml", 14, 9, "spec.metrics[1].resource.name", `resource "memory" is not supported: Capstan scales on cpu`},
			{"hpa.yaml", 19, 9, "spec.metrics[2].resource.target", "target type Utilization needs averageUtilization"},
			{"hpa.yaml", 19, 37, "spec.metrics[2].resource.target.averageValue", "not allowed with target type Utilization"},
			{"hpa.yaml", 23, 9, "spec.metrics[3].resource.target", "target type AverageValue needs averageValue"},
			{"hpa.yaml", 23, 38, "spec.metrics[3].resource.target.averageUtilization", "not allowed with target type AverageValue"},
			{"hpa.yaml", 24, 7, "spec.metrics[4]", "type Resource needs resource"},
			{"hpa.yaml", 33, 3, "spec.metrics", "allowed only with apiVersion autoscaling/v2 (autoscaling/v1"},
			{"hpa.yaml", 38, 3, "spec.behavior", "allowed only with apiVersion autoscaling/v2 (autoscaling/v1"},
			{"hpa.yaml", 46, 20, "spec.scaleTargetRef.apiVersion", `conflicting values "apps/v2" and "apps/v1"`},
			{"hpa.yaml", 46, 41, "spec.scaleTargetRef.kind", `invalid value "Job" (want "Deployment" or "ReplicaSet" or`},
			{"hpa.yaml", 47, 3, "spec.minReplicas", "invalid value 0 (out of bound >=1)"},
			{"hpa.yaml", 48, 3, "spec.maxReplicas", "invalid value 0 (out of bound >=1)"},
			{"hpa.yaml", 53, 18, "spec.metrics[0].resource.target.type", `invalid value "Percent" (want "AverageValue" or`},
			{"hpa.yaml", 53, 33, "spec.metrics[0].resource.target.averageUtilization", "invalid value 0 (out of bound >=1)"},
			{"hpa.yaml", 55, 15, "spec.behavior.scaleUp.stabilizationWindowSeconds", "invalid value 3601 (out of bound <=3600)"},
			{"hpa.yaml", 56, 17, "spec.behavior.scaleDown.stabilizationWindowSeconds", "invalid value -1 (out of bound >=0)"},
		}},
		{[]string{"deployment-deadline.yaml"}, []want{
			{"deployment-deadline.yaml", 6, 3, "spec.minReadySeconds", "must be less than progressDeadlineSeconds (600 by default)"},
		}},
		// Every problem of every file is reported, in file order.
		{[]string{"wrong-type.yaml", "secret.yaml", "../valid/deployment.yaml"}, []want{
			{"wrong-type.yaml", 6, 3, "spec.replicas", "conflicting values"},
			{"secret.yaml", 7, 3, "data.password", "base64"},
		}},
	} {
		t.Run(strings.Join(tc.files, "+"), func(t *testing.T) {
			var paths []string
			for _, f := range tc.files {
				paths = append(paths, dir+f)
			}
			objs, err := Load(readFiles(t, paths...))
			if objs != nil {
				t.Errorf("got %d objects, want none", len(objs))
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got error %v (%T), want an *ErrorList", err, err)
			}
			if len(list.Errors) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(list.Errors), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(list.Errors) {
					break
				}
				g := list.Errors[i]
				if g.File != dir+w.file || g.Line != w.line || g.Col != w.col || g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d:\n got %s\nwant %s%s:%d:%d: %s: ...%s...", i, g, dir, w.file, w.line, w.col, w.field, w.msg)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Col: 5, Field: "spec.replicas", Msg: "bad"}, "a.yaml:3:5: spec.replicas: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "syntax error: x"}, "a.yaml:3: syntax error: x"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := formatPath([]any{"metadata", "labels", "app.kubernetes.io/name"}); got != `metadata.labels["app.kubernetes.io/name"]` {
		t.Errorf("formatPath: got %s", got)
	}
}

func TestMoreInvalid(t *testing.T) {
	t.Parallel()
	const base = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx\n"
	for _, tc := range []struct {
		name, yaml, field, msg string
	}{
		{"template restartPolicy", base + "      restartPolicy: Never\n", "spec.template.spec.restartPolicy", `conflicting values "Always" and "Never"`},
		{"maxSurge", base + "  strategy:\n    rollingUpdate: {maxSurge: 25}\n", "", ""},
		{"bad percent", base + "  strategy:\n    rollingUpdate: {maxSurge: two}\n", "spec.strategy.rollingUpdate.maxSurge", `"two"`},
		{"recreate with rollingUpdate", base + "  strategy:\n    type: Recreate\n    rollingUpdate: {maxSurge: 1}\n", "spec.strategy.rollingUpdate", "Recreate"},
		{"bad label key", strings.Replace(base, "name: web\nspec", "name: web\n  labels: {\"bad key\": x}\nspec", 1), `metadata.labels["bad key"]`, "invalid key"},
		{"bad label value", strings.Replace(base, "name: web\nspec", "name: web\n  labels: {k: \"-x\"}\nspec", 1), "metadata.labels.k", "label value"},
		{"negative replicas", base + "  replicas: -1\n", "spec.replicas", ">=0"},
		{"duplicate container", base + "        - name: web\n          image: nginx\n", "spec.template.spec.containers[1].name", "duplicate container name"},
		{"request over limit", base + "          resources: {requests: {cpu: 2, memory: 1e3}, limits: {cpu: 500m}}\n", "spec.template.spec.containers[0].resources.requests.cpu", "more than the limit"},
		{"unsupported resource", base + "          resources: {limits: {nvidia.com/gpu: 1}}\n", `spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]`, "not allowed"},
		{"missing name", strings.Replace(base, "  name: web\n", "  labels: {a: b}\n", 1), "metadata.name", "required"},
		{"no containers", strings.Replace(base, "        - name: web\n          image: nginx\n", "", 1) + "\n", "spec.template.spec.containers", ""},
		{"empty containers", strings.Replace(base, "      containers:\n        - name: web\n          image: nginx\n", "      containers: []\n", 1), "spec.template.spec.containers", "at least one"},
		{"bad pull policy", base + "          imagePullPolicy: Sometimes\n", "spec.template.spec.containers[0].imagePullPolicy", `want "Always" or "IfNotPresent" or "Never"`},
		{"namespace on Namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "metadata.namespace", "cluster-scoped"},
		{"Node from Git", "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n", "kind", "written by Capstan"},
		{"missing kind", "apiVersion: v1\nmetadata: {name: a}\n", "", "missing kind"},
		{"not an object", "- a\n- b\n", "", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]manifests.File{{Path: "x.yaml", Data: []byte(tc.yaml)}})
			if tc.msg == "" && tc.field == "" {
				require_NoError(t, err)
				return
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got %v, want an *ErrorList", err)
			}
			for _, e := range list.Errors {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) && e.Line > 0 {
					return
				}
			}
			t.Errorf("got:\n%v\nwant an error at %s containing %q", err, tc.field, tc.msg)
		})
	}
}

// TestCronSchedules checks schedules and time zones against the parser
// and the time zone database the CronJob controller uses.
func TestCronSchedules(t *testing.T) {
	t.Parallel()
	cronJob := func(schedule, tz string) []byte {
		y := "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: " + strconv.Quote(schedule) + "\n"
		if tz != "" {
			y += "  timeZone: " + strconv.Quote(tz) + "\n"
		}
		return append([]byte(y), "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: c}]\n"...)
	}
	for _, tc := range []struct {
		schedule, tz string
		field, msg   string // the expected error; none if empty
	}{
		{"*/5 * * * *", "", "", ""},
		{"0 3 * * MON-FRI", "America/New_York", "", ""},
		{"0 0 1 jan *", "UTC", "", ""},
		{"@yearly", "", "", ""},
		{"@hourly", "Asia/Kolkata", "", ""},
		{"@every 1h30m", "", "", ""},
		{"* * * *", "", "spec.schedule", "expected exactly 5 fields, found 4"},
		{"0 0 * * * *", "", "spec.schedule", "expected exactly 5 fields, found 6"},
		{"0 25 * * *", "", "spec.schedule", "above maximum (23)"},
		{"@fortnightly", "", "spec.schedule", "unrecognized descriptor: @fortnightly"},
		{"@every soon", "", "spec.schedule", "failed to parse duration @every soon"},
		{"TZ=UTC 0 * * * *", "", "spec.schedule", "may not set TZ or CRON_TZ"},
		{"0 * * * *", "Europe/Atlantis", "spec.timeZone", `unknown time zone "Europe/Atlantis"`},
		{"0 * * * *", "local", "spec.timeZone", "not Local"},
	} {
		t.Run(tc.schedule+" "+tc.tz, func(t *testing.T) {
			objs, err := Load([]manifests.File{{Path: "c.yaml", Data: cronJob(tc.schedule, tc.tz)}})
			if tc.msg == "" {
				require_NoError(t, err)
				if got := objs[0].(*manifests.CronJob).Spec.Schedule; got != tc.schedule {
					t.Errorf("schedule: got %q", got)
				}
				return
			}
			var list *ErrorList
			if !errors.As(err, &list) || len(list.Errors) != 1 {
				t.Fatalf("got %v, want one error", err)
			}
			if e := list.Errors[0]; e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) || e.Line == 0 {
				t.Errorf("got %v, want %s: ...%s...", e, tc.field, tc.msg)
			}
		})
	}
}

// TestJobParallelismDefaults checks Kubernetes' defaulting of a Job's
// parallelism and completions, which depend on each other.
func TestJobParallelismDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec                     string
		parallelism, completions any // nil: unset
	}{
		{"", int32(1), int32(1)},
		{"  parallelism: 3\n", int32(3), nil},      // a work queue
		{"  parallelism: 1\n", int32(1), nil},      // a work queue of one
		{"  completions: 5\n", int32(1), int32(5)}, // one at a time
		{"  parallelism: 2\n  completions: 4\n", int32(2), int32(4)},
	} {
		y := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n" + tc.spec +
			"  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: c}]\n"
		objs, err := Load([]manifests.File{{Path: "j.yaml", Data: []byte(y)}})
		require_NoError(t, err)
		spec := objs[0].(*manifests.Job).Spec
		deref := func(p *int32) any {
			if p == nil {
				return nil
			}
			return *p
		}
		if p, c := deref(spec.Parallelism), deref(spec.Completions); p != tc.parallelism || c != tc.completions {
			t.Errorf("%q: got parallelism %v, completions %v; want %v, %v", tc.spec, p, c, tc.parallelism, tc.completions)
		}
	}
}

func TestEmptyAndIgnored(t *testing.T) {
	t.Parallel()
	objs, err := Load([]manifests.File{
		{Path: "empty.yaml"}, {Path: "blank.yaml", Data: []byte("---\n# nothing\n---\n")},
		{Path: "empty.json", Data: []byte(" \n")}, {Path: "README.md", Data: []byte("# not a manifest: {")},
	})
	require_NoError(t, err)
	if len(objs) != 0 {
		t.Fatalf("got %d objects, want none", len(objs))
	}
}

// TestMaximalRoundTrip loads, for each kind, an object that sets every
// field the schema allows (testdata/maximal), and checks that every one of
// them reaches the Go object: a field the schema accepts but the Go types
// lack would be lost on the way. The re-marshalled object, without what Go
// adds, must load to the same object: defaults are idempotent.
func TestMaximalRoundTrip(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("testdata/maximal/*.yaml")
	require_NoError(t, err)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			files := readFiles(t, p)
			objs, err := Load(files)
			require_NoError(t, err)
			if len(objs) != 1 {
				t.Fatalf("got %d objects, want 1", len(objs))
			}
			out, err := json.Marshal(objs[0])
			require_NoError(t, err)
			var in, got map[string]any
			require_NoError(t, yaml.Unmarshal(files[0].Data, &in))
			require_NoError(t, json.Unmarshal(out, &got))
			if missing := notIn(in, got, ""); len(missing) > 0 {
				t.Errorf("fields lost between the schema and the Go types: %v\ngot %s", missing, out)
			}
			delete(got, "status")
			dropEmptyTemplateNames(got, true)
			again, err := json.Marshal(got)
			require_NoError(t, err)
			objs2, err := Load([]manifests.File{{Path: "again.json", Data: again}})
			require_NoError(t, err)
			if !reflect.DeepEqual(objs, objs2) {
				t.Errorf("round trip changed the object:\n%+v\n%+v", objs[0], objs2[0])
			}
		})
	}
}

// dropEmptyTemplateNames removes the empty name Go writes in the metadata
// of a template, which the schema does not allow.
func dropEmptyTemplateNames(v any, top bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if m, ok := x.(map[string]any); ok && k == "metadata" && !top && m["name"] == "" {
				delete(m, "name")
			}
			dropEmptyTemplateNames(x, false)
		}
	case []any:
		for _, x := range v {
			dropEmptyTemplateNames(x, false)
		}
	}
}

// TestMaximalCoversSchema checks that the maximal fixtures of each kind set
// every field of its definition, so that TestMaximalRoundTrip checks them
// all. A pod spec's fields are covered once, by maximal/pod.yaml, for
// every kind that has one.
func TestMaximalCoversSchema(t *testing.T) {
	t.Parallel()
	mustCompile()
	paths, err := filepath.Glob("testdata/maximal/*.yaml")
	require_NoError(t, err)
	covered := map[string]map[string]bool{} // kind -> normalized paths
	pod := map[string]bool{}
	for _, p := range paths {
		var obj map[string]any
		require_NoError(t, yaml.Unmarshal(readFiles(t, p)[0].Data, &obj))
		kind := obj["kind"].(string)
		if covered[kind] == nil {
			covered[kind] = map[string]bool{}
		}
		fixturePaths(obj, "", func(path string) {
			covered[kind][path] = true
			if rest, ok := podSpecPath(kind, path); ok {
				pod[rest] = true
			}
		})
	}
	for _, kind := range gitKinds {
		fields := map[string]bool{}
		shapePaths(shapes[kind], "", fields)
		for f := range fields {
			if covered[kind][f] {
				continue
			}
			if rest, ok := podSpecPath(kind, f); ok && pod[rest] {
				continue
			}
			if maximalKinds[kind] {
				t.Errorf("%s: no maximal fixture sets %s", kind, f)
			}
		}
	}
}

// maximalKinds are the kinds with a maximal fixture.
var maximalKinds = map[string]bool{"Pod": true, "Deployment": true, "ReplicationController": true, "StatefulSet": true,
	"DaemonSet": true, "Job": true, "CronJob": true, "HorizontalPodAutoscaler": true, "Service": true}

// podSpecPath returns the part of path within a pod spec, if it is in one,
// from its innermost shared definition: a field of an HTTP action is
// covered once for all probes and hooks, of init and app containers.
func podSpecPath(kind, path string) (string, bool) {
	rest, ok := "", false
	if kind == "Pod" {
		rest, ok = strings.CutPrefix(path, "spec.")
	}
	for _, prefix := range []string{"spec.template.spec.", "spec.jobTemplate.spec.template.spec."} {
		if r, found := strings.CutPrefix(path, prefix); found {
			rest, ok = r, true
		}
	}
	if !ok {
		return "", false
	}
	segs := strings.Split(rest, ".")
	root := 0
	for i, s := range segs {
		if a, ok := sharedDefs[s]; ok {
			segs[i] = a
		}
		if sharedRoots[segs[i]] {
			root = i
		}
	}
	return strings.Join(segs[root:], "."), true
}

// sharedDefs names the fields of a pod spec that hold the same definition.
var sharedDefs = map[string]string{
	"initContainers": "containers", "livenessProbe": "probe", "readinessProbe": "probe", "startupProbe": "probe",
	"postStart": "hook", "preStop": "hook", "configMapRef": "envSource", "secretRef": "envSource",
	"configMapKeyRef": "keySelector", "secretKeyRef": "keySelector",
}

// sharedRoots are the definitions used in several places of a pod spec.
var sharedRoots = map[string]bool{"containers": true, "probe": true, "hook": true, "httpGet": true, "exec": true,
	"tcpSocket": true, "sleep": true, "fieldRef": true, "resourceFieldRef": true, "items": true,
	"envSource": true, "keySelector": true}

// fixturePaths calls f with every field path of v, list indexes left out.
func fixturePaths(v any, prefix string, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := strings.TrimPrefix(prefix+"."+k, ".")
			f(p)
			fixturePaths(x, p, f)
		}
	case []any:
		for _, x := range v {
			fixturePaths(x, prefix, f)
		}
	}
}

// notIn lists the paths of a that b lacks or holds with another value.
func notIn(a, b any, path string) []string {
	switch a := a.(type) {
	case map[string]any:
		bm, _ := b.(map[string]any)
		var missing []string
		for k, v := range a {
			missing = append(missing, notIn(v, bm[k], path+"."+k)...)
		}
		return missing
	case []any:
		bl, _ := b.([]any)
		if len(bl) != len(a) {
			return []string{path}
		}
		var missing []string
		for i := range a {
			missing = append(missing, notIn(a[i], bl[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return missing
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return []string{path}
		}
		return nil
	}
}

// TestShapesMatchGoTypes checks that the definitions list exactly the json
// fields of the Go types, except those Git may not set. A Go map may be a
// struct with fixed fields in the schema (a ResourceList has cpu and memory).
func TestShapesMatchGoTypes(t *testing.T) {
	t.Parallel()
	mustCompile()
	// Fields of the Go types the schema leaves out on purpose: what the
	// server sets, anywhere, and the name and namespace of an embedded
	// template's metadata (a pod or job template, a claim template's
	// namespace), which Kubernetes ignores.
	serverSet := map[string]bool{"uid": true, "generation": true, "resourceVersion": true,
		"creationTimestamp": true, "deletionTimestamp": true, "deletionGracePeriodSeconds": true, "ownerReferences": true}
	omitted := func(kind, p string) bool {
		parent, field := "", p
		if i := strings.LastIndexByte(p, '.'); i >= 0 {
			parent, field = p[:i], p[i+1:]
		}
		nested := strings.HasSuffix(parent, ".metadata")
		switch {
		case p == "status" || strings.HasPrefix(p, "status.") || strings.Contains(p, "ownerReferences."):
			return true
		case (parent == "metadata" || nested) && serverSet[field]:
			return true
		case nested && (field == "name" || field == "namespace"):
			return true
		}
		// Cluster-scoped kinds have no namespace; a Source's branch is the
		// root's (from `capstan up --branch`), declared sources use ref.
		ns, _ := manifests.LookupKind(kind)
		return !ns.Namespaced && p == "metadata.namespace" || kind == "Source" && p == "spec.branch"
	}
	for _, kind := range gitKinds {
		info, _ := manifests.LookupKind(kind)
		goFields := map[string]bool{}
		goPaths(reflect.TypeOf(info.New()).Elem(), "", goFields)
		cueFields := map[string]bool{}
		shapePaths(shapes[kind], "", cueFields)
		for p := range cueFields {
			parent := p[:max(strings.LastIndexByte(p, '.'), 0)]
			if _, ok := goFields[p]; !ok && !goFields[parent] {
				t.Errorf("%s: the schema has %s, the Go type does not", kind, p)
			}
		}
		for p := range goFields {
			if !cueFields[p] && !omitted(kind, p) {
				t.Errorf("%s: the Go type has %s, the schema does not", kind, p)
			}
		}
	}
}

func shapePaths(s *shape, prefix string, out map[string]bool) {
	for name, f := range s.fields {
		p := strings.TrimPrefix(prefix+"."+name, ".")
		out[p] = true
		for f.elem != nil {
			f = f.elem
		}
		shapePaths(f, p, out)
	}
}

var (
	timeType     = reflect.TypeOf(manifests.Time{})
	intOrStrType = reflect.TypeOf(manifests.IntOrString{})
)

func goPaths(t reflect.Type, prefix string, out map[string]bool) { // path -> is a map
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || t == intOrStrType {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			goPaths(f.Type, prefix, out) // TypeMeta is inline
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		p := strings.TrimPrefix(prefix+"."+name, ".")
		out[p] = f.Type.Kind() == reflect.Map
		goPaths(f.Type, p, out)
	}
}

func TestPatternsAreInSchema(t *testing.T) {
	t.Parallel()
	src, err := cueFiles.ReadFile("cue/kinds.cue")
	require_NoError(t, err)
	for _, p := range patterns {
		if !strings.Contains(string(src), strconv.Quote(p.re)) {
			t.Errorf("pattern %s is not in kinds.cue", p.re)
		}
	}
}

func TestLoadConcurrent(t *testing.T) {
	t.Parallel()
	files := readFiles(t, "testdata/valid/deployment.yaml", "testdata/valid/app.yaml", "testdata/valid/replicaset.yml", "testdata/valid/workers.cue")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			objs, err := Load(files)
			if err != nil || len(objs) != 9 {
				t.Errorf("got %d objects, %v", len(objs), err)
			}
		})
	}
	wg.Wait()
}

func deploymentYAML(i int) []byte {
	return fmt.Appendf(nil, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%d
  namespace: team-%d
  labels: {app: app-%d}
spec:
  replicas: 3
  selector:
    matchLabels: {app: app-%d}
  template:
    metadata:
      labels: {app: app-%d}
    spec:
      containers:
        - name: app
          image: registry.example.com/app:%d
          env:
            - {name: PORT, value: "8080"}
          ports:
            - containerPort: 8080
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 500m, memory: 256Mi}
`, i, i%10, i, i, i, i)
}

// BenchmarkLoad loads 1,000 small Deployments, one per file (files are
// validated in parallel), and as one multi-document file (serially).
func BenchmarkLoad(b *testing.B) {
	const n = 1000
	files := make([]manifests.File, n)
	var stream []byte
	for i := range files {
		files[i] = manifests.File{Path: fmt.Sprintf("app-%d.yaml", i), Data: deploymentYAML(i)}
		stream = append(append(stream, "---\n"...), files[i].Data...)
	}
	for _, bc := range []struct {
		name  string
		files []manifests.File
	}{
		{"files", files},
		{"stream", []manifests.File{{Path: "all.yaml", Data: stream}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				objs, err := Load(bc.files)
				if err != nil || len(objs) != n {
					b.Fatalf("got %d objects, %v", len(objs), err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "manifests/s")
		})
	}
}
