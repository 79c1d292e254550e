package schema

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/capstan-io/capstan/manifests"
)

// sub returns base followed by more, without sharing base's array, so that
// paths built from one prefix never overwrite each other.
func sub(base []any, more ...any) []any {
	return append(slices.Clip(base), more...)
}

// oneOf checks that exactly one of the named members is set (set[i] tells
// whether names[i] is); what says so, as in "a probe has exactly one
// handler". None set is reported at the field itself, each
// extra one at its own key.
func oneOf(d doc, at []any, what string, names []string, set []bool) []Error {
	first := -1
	var errs []Error
	for i, ok := range set {
		if !ok {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		errs = append(errs, d.errorf(sub(at, names[i]), "may not be set with %s: %s", names[first], what))
	}
	if first < 0 {
		errs = append(errs, d.errorf(at, "must set one of %s", orList(names)))
	}
	return errs
}

func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// podCheck holds what the checks of one pod spec share.
type podCheck struct {
	d    doc
	at   []any // the path of the pod spec
	spec *manifests.PodSpec
	// volumes are the names a volumeMount may use: the pod's volumes and a
	// StatefulSet's claim templates.
	volumes    map[string]bool
	claims     bool // a StatefulSet: claim templates may be mounted too
	containers map[string]bool
	errs       []Error
}

func (p *podCheck) errorf(path []any, format string, args ...any) {
	p.errs = append(p.errs, p.d.errorf(path, format, args...))
}

// checkPodSpec checks what spans the fields of a pod spec, and applies the
// defaults Kubernetes applies to zero values (a probe's periodSeconds 0 is
// 10). claims are a StatefulSet's claim template names, which its
// containers may mount.
func checkPodSpec(d doc, at []any, spec *manifests.PodSpec, claims []string) []Error {
	p := &podCheck{d: d, at: at, spec: spec, volumes: map[string]bool{}, containers: map[string]bool{}, claims: claims != nil}
	for _, c := range spec.InitContainers {
		p.containers[c.Name] = true
	}
	for _, c := range spec.Containers {
		p.containers[c.Name] = true
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		vp := sub(at, "volumes", i)
		if p.volumes[v.Name] {
			p.errorf(sub(vp, "name"), "duplicate volume name %q", v.Name)
		}
		p.volumes[v.Name] = true
		p.checkVolume(vp, v)
	}
	for _, c := range claims {
		p.volumes[c] = true
	}
	seen := map[string]bool{}
	for _, group := range []struct {
		field string
		list  []manifests.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}} {
		for i := range group.list {
			c := &group.list[i]
			cp := sub(at, group.field, i)
			if seen[c.Name] {
				p.errorf(sub(cp, "name"), "duplicate container name %q", c.Name)
			}
			seen[c.Name] = true
			p.checkContainer(cp, c, group.field == "initContainers")
		}
	}
	return p.errs
}

func (p *podCheck) checkContainer(at []any, c *manifests.Container, init bool) {
	for res, req := range c.Resources.Requests {
		lim, ok := c.Resources.Limits[res]
		if !ok {
			continue
		}
		r, _ := req.Rat()
		l, _ := lim.Rat()
		if r != nil && l != nil && r.Cmp(l) > 0 {
			p.errorf(sub(at, "resources", "requests", res), "request %s is more than the limit %s", req, lim)
		}
	}
	ports := map[string]bool{}
	for i, port := range c.Ports {
		if port.Name == "" {
			continue
		}
		if ports[port.Name] {
			p.errorf(sub(at, "ports", i, "name"), "duplicate port name %q", port.Name)
		}
		ports[port.Name] = true
	}
	for i := range c.Env {
		p.checkEnv(sub(at, "env", i), &c.Env[i])
	}
	for i, e := range c.EnvFrom {
		p.errs = append(p.errs, oneOf(p.d, sub(at, "envFrom", i), "an envFrom entry has exactly one source", []string{"configMapRef", "secretRef"},
			[]bool{e.ConfigMapRef != nil, e.SecretRef != nil})...)
	}
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := sub(at, "volumeMounts", i)
		if !p.volumes[m.Name] {
			where := "spec.volumes"
			if p.claims {
				where += " nor in spec.volumeClaimTemplates"
			}
			p.errorf(sub(mp, "name"), "volume %q is not declared in %s", m.Name, where)
		}
		if mounts[m.MountPath] {
			p.errorf(sub(mp, "mountPath"), "duplicate mountPath %q", m.MountPath)
		}
		mounts[m.MountPath] = true
		if m.SubPath != "" {
			if msg := descendingPath(m.SubPath); msg != "" {
				p.errorf(sub(mp, "subPath"), "%s", msg)
			}
		}
	}
	for _, probe := range []struct {
		field string
		probe *manifests.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if probe.probe == nil {
			continue
		}
		pp := sub(at, probe.field)
		if init {
			p.errorf(pp, "not allowed on an init container: Kubernetes allows probes only on sidecars (an init container with restartPolicy Always), which Capstan does not support")
			continue
		}
		p.checkProbe(pp, probe.field, probe.probe, c)
	}
	if c.Lifecycle != nil {
		if init {
			p.errorf(sub(at, "lifecycle"), "not allowed on an init container: Kubernetes allows lifecycle hooks only on sidecars (an init container with restartPolicy Always), which Capstan does not support")
		} else {
			for _, h := range []struct {
				field string
				h     *manifests.LifecycleHandler
			}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}} {
				if h.h != nil {
					p.checkHook(sub(at, "lifecycle", h.field), h.h, c)
				}
			}
		}
	}
}

// Probe defaults, applied as Kubernetes does to unset or zero fields.
const (
	defaultTimeoutSeconds   = 1
	defaultPeriodSeconds    = 10
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

func (p *podCheck) checkProbe(at []any, field string, pr *manifests.Probe, c *manifests.Container) {
	h := &pr.ProbeHandler
	p.errs = append(p.errs, oneOf(p.d, at, "a probe has exactly one handler", []string{"exec", "httpGet", "tcpSocket"},
		[]bool{h.Exec != nil, h.HTTPGet != nil, h.TCPSocket != nil})...)
	if h.HTTPGet != nil {
		p.checkHTTPGet(sub(at, "httpGet"), h.HTTPGet, c)
	}
	if h.TCPSocket != nil {
		p.checkPort(sub(at, "tcpSocket", "port"), h.TCPSocket.Port, c)
	}
	for _, f := range []struct {
		v   *int32
		def int32
	}{{&pr.TimeoutSeconds, defaultTimeoutSeconds}, {&pr.PeriodSeconds, defaultPeriodSeconds},
		{&pr.SuccessThreshold, defaultSuccessThreshold}, {&pr.FailureThreshold, defaultFailureThreshold}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if field != "readinessProbe" && pr.SuccessThreshold != 1 {
		p.errorf(sub(at, "successThreshold"), "must be 1 for a %s", strings.TrimSuffix(field, "Probe")+" probe")
	}
	if field == "readinessProbe" && pr.TerminationGracePeriodSeconds != nil {
		p.errorf(sub(at, "terminationGracePeriodSeconds"), "not allowed on a readiness probe")
	}
}

func (p *podCheck) checkHook(at []any, h *manifests.LifecycleHandler, c *manifests.Container) {
	p.errs = append(p.errs, oneOf(p.d, at, "a lifecycle hook has exactly one handler", []string{"exec", "httpGet", "sleep"},
		[]bool{h.Exec != nil, h.HTTPGet != nil, h.Sleep != nil})...)
	if h.HTTPGet != nil {
		p.checkHTTPGet(sub(at, "httpGet"), h.HTTPGet, c)
	}
	if s := h.Sleep; s != nil {
		if grace := p.spec.TerminationGracePeriodSeconds; grace != nil && s.Seconds > *grace {
			p.errorf(sub(at, "sleep", "seconds"), "may not be more than terminationGracePeriodSeconds (%d)", *grace)
		}
	}
}

// checkHTTPGet checks the port and applies the defaults of an HTTP action.
func (p *podCheck) checkHTTPGet(at []any, g *manifests.HTTPGetAction, c *manifests.Container) {
	p.checkPort(sub(at, "port"), g.Port, c)
	if g.Path == "" {
		g.Path = "/"
	}
	if g.Scheme == "" {
		g.Scheme = "HTTP"
	}
}

// checkPort checks that a probe's or hook's named port is a port of the
// container; the schema checked numbers and the syntax of names.
func (p *podCheck) checkPort(at []any, port manifests.IntOrString, c *manifests.Container) {
	if !port.IsString {
		return
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return
		}
	}
	p.errorf(at, "no port named %q in the container's ports", port.StrVal)
}

func (p *podCheck) checkEnv(at []any, e *manifests.EnvVar) {
	vf := e.ValueFrom
	if vf == nil {
		return
	}
	if e.Value != "" {
		p.errorf(sub(at, "valueFrom"), "may not be set with a non-empty value")
	}
	vp := sub(at, "valueFrom")
	p.errs = append(p.errs, oneOf(p.d, vp, "valueFrom has exactly one source", []string{"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"},
		[]bool{vf.ConfigMapKeyRef != nil, vf.SecretKeyRef != nil, vf.FieldRef != nil, vf.ResourceFieldRef != nil})...)
	if f := vf.FieldRef; f != nil {
		p.checkFieldRef(sub(vp, "fieldRef"), f, envFieldPaths, "an environment variable")
	}
	if r := vf.ResourceFieldRef; r != nil {
		p.checkResourceFieldRef(sub(vp, "resourceFieldRef"), r, false)
	}
}

// envFieldPaths are the pod fields an environment variable may take
// (besides one label or annotation), as in Kubernetes.
var envFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}

// volumeFieldPaths are the pod fields a downwardAPI volume file may hold
// (besides one label or annotation), as in Kubernetes.
var volumeFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"}

var labelKeyRE = regexp.MustCompile(labelKeyPattern)

// checkFieldRef checks a Downward API field path and defaults its
// apiVersion to v1.
func (p *podCheck) checkFieldRef(at []any, f *manifests.ObjectFieldSelector, paths []string, what string) {
	if f.APIVersion == "" {
		f.APIVersion = "v1"
	}
	fp := f.FieldPath
	if base, key, ok := strings.Cut(fp, "['"); ok && strings.HasSuffix(key, "']") {
		key = strings.TrimSuffix(key, "']")
		if base != "metadata.labels" && base != "metadata.annotations" {
			p.errorf(sub(at, "fieldPath"), "invalid field path %q: only metadata.labels and metadata.annotations take a key", fp)
		} else if !labelKeyRE.MatchString(key) {
			p.errorf(sub(at, "fieldPath"), "invalid key %q in %q (want %s)", key, fp, explainPattern(labelKeyPattern))
		}
		return
	}
	if !slices.Contains(paths, fp) {
		p.errorf(sub(at, "fieldPath"), "unsupported field path %q for %s (want %s, metadata.labels['key'] or metadata.annotations['key'])",
			fp, what, strings.Join(paths, ", "))
	}
}

// divisors are the divisors Kubernetes allows, by resource.
var divisors = map[string][]manifests.Quantity{
	"cpu":    {"1m", "1"},
	"memory": {"1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"},
}

func (p *podCheck) checkResourceFieldRef(at []any, r *manifests.ResourceFieldSelector, inVolume bool) {
	switch {
	case r.ContainerName == "" && inVolume:
		p.errorf(sub(at, "containerName"), "required in a downwardAPI volume")
	case r.ContainerName != "" && !p.containers[r.ContainerName]:
		p.errorf(sub(at, "containerName"), "no container named %q in the pod", r.ContainerName)
	}
	if r.Divisor == "" {
		return
	}
	_, res, _ := strings.Cut(r.Resource, ".")
	want := divisors[res]
	got, err := r.Divisor.Rat()
	if err != nil {
		return // the schema checked the syntax
	}
	for _, w := range want {
		if wr, _ := w.Rat(); wr != nil && wr.Cmp(got) == 0 {
			return
		}
	}
	p.errorf(sub(at, "divisor"), "invalid divisor %s for %s (want one of %s)", r.Divisor, res, quantities(want))
}

func quantities(qs []manifests.Quantity) string {
	s := make([]string, len(qs))
	for i, q := range qs {
		s[i] = string(q)
	}
	return strings.Join(s, ", ")
}

var volumeSources = []string{"emptyDir", "hostPath", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim"}

func (p *podCheck) checkVolume(at []any, v *manifests.Volume) {
	s := &v.VolumeSource
	p.errs = append(p.errs, oneOf(p.d, at, "a volume has exactly one source", volumeSources, []bool{s.EmptyDir != nil, s.HostPath != nil,
		s.ConfigMap != nil, s.Secret != nil, s.Projected != nil, s.DownwardAPI != nil, s.PersistentVolumeClaim != nil})...)
	if s.ConfigMap != nil {
		p.checkItems(sub(at, "configMap"), s.ConfigMap.Items, nil)
	}
	if s.Secret != nil {
		p.checkItems(sub(at, "secret"), s.Secret.Items, nil)
	}
	if s.DownwardAPI != nil {
		p.checkDownwardItems(sub(at, "downwardAPI"), s.DownwardAPI.Items, nil)
	}
	if s.Projected != nil {
		paths := map[string]bool{}
		for i := range s.Projected.Sources {
			src := &s.Projected.Sources[i]
			sp := sub(at, "projected", "sources", i)
			p.errs = append(p.errs, oneOf(p.d, sp, "a projection has exactly one source", []string{"configMap", "secret", "downwardAPI"},
				[]bool{src.ConfigMap != nil, src.Secret != nil, src.DownwardAPI != nil})...)
			if src.ConfigMap != nil {
				p.checkItems(sub(sp, "configMap"), src.ConfigMap.Items, paths)
			}
			if src.Secret != nil {
				p.checkItems(sub(sp, "secret"), src.Secret.Items, paths)
			}
			if src.DownwardAPI != nil {
				p.checkDownwardItems(sub(sp, "downwardAPI"), src.DownwardAPI.Items, paths)
			}
		}
	}
}

// checkItems checks the paths of a ConfigMap's or Secret's items. paths,
// when not nil, collects the paths of a projected volume, which may not
// repeat across its sources.
func (p *podCheck) checkItems(at []any, items []manifests.KeyToPath, paths map[string]bool) {
	for i, it := range items {
		p.checkFilePath(sub(at, "items", i, "path"), it.Path, paths)
	}
}

func (p *podCheck) checkDownwardItems(at []any, items []manifests.DownwardAPIVolumeFile, paths map[string]bool) {
	for i := range items {
		it := &items[i]
		ip := sub(at, "items", i)
		p.checkFilePath(sub(ip, "path"), it.Path, paths)
		p.errs = append(p.errs, oneOf(p.d, ip, "a downwardAPI file has exactly one source", []string{"fieldRef", "resourceFieldRef"},
			[]bool{it.FieldRef != nil, it.ResourceFieldRef != nil})...)
		if it.FieldRef != nil {
			p.checkFieldRef(sub(ip, "fieldRef"), it.FieldRef, volumeFieldPaths, "a downwardAPI volume")
		}
		if it.ResourceFieldRef != nil {
			p.checkResourceFieldRef(sub(ip, "resourceFieldRef"), it.ResourceFieldRef, true)
		}
	}
}

func (p *podCheck) checkFilePath(at []any, path string, paths map[string]bool) {
	msg := descendingPath(path)
	if msg == "" && strings.HasPrefix(path, "..") {
		msg = "must not start with '..'"
	}
	if msg != "" {
		p.errorf(at, "%s", msg)
		return
	}
	if paths != nil {
		if paths[path] {
			p.errorf(at, "duplicate path %q in the projected volume", path)
		}
		paths[path] = true
	}
}

// descendingPath says what is wrong with a path that must stay inside a
// directory: it must be relative and have no ".." element.
func descendingPath(path string) string {
	if strings.HasPrefix(path, "/") {
		return fmt.Sprintf("%q must be a relative path", path)
	}
	if slices.Contains(strings.Split(path, "/"), "..") {
		return fmt.Sprintf("%q must not contain '..'", path)
	}
	return ""
}
