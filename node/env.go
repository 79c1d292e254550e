package node

import (
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strings"

	"github.com/capstan-io/capstan/manifests"
)

// The environment of a container, resolved as the kubelet does: envFrom
// first (in order, later sources overriding earlier ones), then env (in
// order, each entry overriding what came before), with $(VAR) references in
// env values, command and args expanded against what is defined so far.

// podObjects are the ConfigMaps and Secrets an assignment carries beside its
// pod, by name: only those the pod references.
type podObjects struct {
	configMaps map[string]*manifests.ConfigMap
	secrets    map[string]*manifests.Secret
}

func newPodObjects(a *manifests.Assignment) podObjects {
	o := podObjects{configMaps: map[string]*manifests.ConfigMap{}, secrets: map[string]*manifests.Secret{}}
	for i := range a.ConfigMaps {
		o.configMaps[a.ConfigMaps[i].Name] = &a.ConfigMaps[i]
	}
	for i := range a.Secrets {
		o.secrets[a.Secrets[i].Name] = &a.Secrets[i]
	}
	return o
}

// configMapValue returns a ConfigMap key's value from data or binaryData.
func configMapValue(cm *manifests.ConfigMap, key string) (string, bool) {
	if v, ok := cm.Data[key]; ok {
		return v, true
	}
	v, ok := cm.BinaryData[key]
	return string(v), ok
}

// downward is what the Downward API reads besides the pod itself. The
// functions are called only when a field needs them; nil means unknown.
type downward struct {
	hostIP string
	podIP  func() string
	// node returns the node's CPU (millicores) and memory (bytes), which
	// stand in for unset limits, as the kubelet uses the node's allocatable.
	node func() (cpuMilli, memory int64)
}

func (dw downward) nodeResources() (int64, int64) {
	if dw.node == nil {
		return 0, 0
	}
	return dw.node()
}

// configError is a container whose configuration cannot be completed: a
// missing ConfigMap, Secret or key, or a bad field reference. It shows as
// the container's CreateContainerConfigError.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

func isOptional(p *bool) bool { return p != nil && *p }

// envVarName is what Kubernetes accepts as an environment variable name
// (the classic C identifier rule, extended with '-' and '.').
var envVarName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// resolveEnv computes a container's environment. It returns the variables,
// in the order they were defined, the envFrom keys skipped as invalid names,
// and a *configError for a missing non-optional reference.
func resolveEnv(pod *manifests.Pod, c *manifests.Container, objs podObjects, dw downward) (env map[string]string, order []string, skipped []string, err error) {
	env = map[string]string{}
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := objs.configMaps[from.ConfigMapRef.Name]
			if !ok {
				if isOptional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("configmap %q not found", from.ConfigMapRef.Name)
			}
			data = maps.Clone(cm.Data)
			if data == nil {
				data = map[string]string{}
			}
			for k, v := range cm.BinaryData {
				data[k] = string(v)
			}
		case from.SecretRef != nil:
			s, ok := objs.secrets[from.SecretRef.Name]
			if !ok {
				if isOptional(from.SecretRef.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("secret %q not found", from.SecretRef.Name)
			}
			data = make(map[string]string, len(s.Data))
			for k, v := range s.Data {
				data[k] = string(v)
			}
		default:
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			name := from.Prefix + k
			if !envVarName.MatchString(name) {
				skipped = append(skipped, name)
				continue
			}
			set(name, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expandVars(e.Value, env))
			continue
		}
		v, ok, err := envValueFrom(pod, c, e.ValueFrom, objs, dw)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return env, order, skipped, nil
}

// envValueFrom resolves one valueFrom; ok is false for an optional
// reference that is missing (the variable is then not set).
func envValueFrom(pod *manifests.Pod, c *manifests.Container, src *manifests.EnvVarSource, objs podObjects, dw downward) (string, bool, error) {
	switch {
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, ok := objs.configMaps[ref.Name]
		if !ok {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("configmap %q not found", ref.Name)
		}
		v, ok := configMapValue(cm, ref.Key)
		if !ok {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, true, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, ok := objs.secrets[ref.Name]
		if !ok {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("secret %q not found", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), true, nil
	case src.FieldRef != nil:
		v, err := podField(pod, src.FieldRef.FieldPath, dw, true)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := resourceField(pod, c, src.ResourceFieldRef, dw)
		return v, err == nil, err
	}
	return "", false, configErrorf("valueFrom names no source")
}

// podField resolves a Downward API field path. Env (forEnv) may also read
// spec and status fields; volume files only metadata, as Kubernetes.
func podField(pod *manifests.Pod, path string, dw downward, forEnv bool) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return pod.UID, nil
	case "metadata.labels":
		if !forEnv {
			return formatMap(pod.Labels), nil
		}
	case "metadata.annotations":
		if !forEnv {
			return formatMap(pod.Annotations), nil
		}
	}
	if forEnv {
		switch path {
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return "", nil // Capstan has no service accounts
		case "status.hostIP":
			return dw.hostIP, nil
		case "status.podIP":
			if dw.podIP == nil {
				return "", nil
			}
			return dw.podIP(), nil
		}
	}
	return "", configErrorf("unsupported field path %q", path)
}

// subscript parses field['key'] (or field["key"]).
func subscript(path, field string) (string, bool) {
	rest, ok := strings.CutPrefix(path, field+"[")
	if !ok || !strings.HasSuffix(rest, "]") || len(rest) < 3 {
		return "", false
	}
	rest = rest[:len(rest)-1]
	q := rest[0]
	if (q != '\'' && q != '"') || rest[len(rest)-1] != q || len(rest) < 2 {
		return "", false
	}
	return rest[1 : len(rest)-1], true
}

// formatMap writes labels or annotations as the Downward API does: one
// key="value" line per entry, sorted by key.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// resourceField resolves limits.cpu, limits.memory, requests.cpu or
// requests.memory of the container (or the one named), divided by the
// divisor and rounded up, as Kubernetes. An unset limit is the node's
// capacity.
func resourceField(pod *manifests.Pod, c *manifests.Container, ref *manifests.ResourceFieldSelector, dw downward) (string, error) {
	if ref.ContainerName != "" {
		c = nil
		for _, list := range [][]manifests.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for i := range list {
				if list[i].Name == ref.ContainerName {
					c = &list[i]
				}
			}
		}
		if c == nil {
			return "", configErrorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	if c == nil {
		return "", configErrorf("resourceFieldRef %s needs containerName", ref.Resource)
	}
	kind, res, _ := strings.Cut(ref.Resource, ".")
	var list manifests.ResourceList
	switch kind {
	case "limits":
		list = c.Resources.Limits
	case "requests":
		list = c.Resources.Requests
	default:
		return "", configErrorf("unsupported resource %q", ref.Resource)
	}
	var value *big.Rat
	if q, ok := list[res]; ok {
		r, err := q.Rat()
		if err != nil {
			return "", configErrorf("resource %s: %v", ref.Resource, err)
		}
		value = r
	}
	switch res {
	case "cpu":
		if value == nil && kind == "limits" {
			cpu, _ := dw.nodeResources()
			value = big.NewRat(cpu, 1000)
		}
	case "memory":
		if value == nil && kind == "limits" {
			_, mem := dw.nodeResources()
			value = big.NewRat(mem, 1)
		}
	default:
		return "", configErrorf("unsupported resource %q", ref.Resource)
	}
	if value == nil {
		value = new(big.Rat)
	}
	divisor := big.NewRat(1, 1)
	if ref.Divisor != "" {
		d, err := ref.Divisor.Rat()
		if err != nil || d.Sign() == 0 {
			return "", configErrorf("resourceFieldRef %s: bad divisor %q", ref.Resource, ref.Divisor)
		}
		divisor = d
	}
	q := new(big.Rat).Quo(value, divisor)
	n := new(big.Int).Quo(q.Num(), q.Denom())
	if new(big.Rat).SetInt(n).Cmp(q) < 0 {
		n.Add(n, big.NewInt(1))
	}
	return n.String(), nil
}

// expandVars expands $(VAR) references as Kubernetes does: a reference to a
// defined variable becomes its value; one to an undefined variable is left
// as written; $$ is an escaped $; a $ followed by anything else stays.
func expandVars(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	checkpoint := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		b.WriteString(s[checkpoint:i])
		rest := s[i+1:]
		advance := 1
		switch rest[0] {
		case '$':
			b.WriteByte('$')
		case '(':
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				b.WriteString("$(")
				break
			}
			name := rest[1:end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			advance = end + 1
		default:
			b.WriteByte('$')
			b.WriteByte(rest[0])
		}
		i += advance
		checkpoint = i + 1
	}
	b.WriteString(s[checkpoint:])
	return b.String()
}

// expandAll expands every string of a command or args list.
func expandAll(list []string, vars map[string]string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = expandVars(s, vars)
	}
	return out
}
