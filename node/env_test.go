package node

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func TestExpandVars(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"A": "a", "B": "b$(A)", "EMPTY": ""}
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"$(A)", "a"},
		{"x$(A)y$(A)z", "xayaz"},
		{"$(B)", "b$(A)"}, // values are not expanded twice
		{"$(EMPTY)-", "-"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"}, // escaped
		{"$$$(A)", "$a"},
		{"$$$$", "$$"},
		{"$A", "$A"},
		{"$", "$"},
		{"a$", "a$"},
		{"$(A", "$(A"},
		{"$(A$(A)", "$(A$(A)"}, // the name runs to the first ')'
		{"$()", "$()"},
		{"$(A)$(", "a$("},
		{"100$", "100$"},
	}
	for _, tc := range tests {
		if got := expandVars(tc.in, vars); got != tc.want {
			t.Errorf("expandVars(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	t.Parallel()
	tru := true
	pod := &manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: "web-1", Namespace: "prod", UID: "uid-1",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "core"}},
		Spec: manifests.PodSpec{NodeName: "n1", Containers: []manifests.Container{
			{Name: "other", Resources: manifests.ResourceRequirements{Limits: manifests.ResourceList{"memory": "64Mi"}}},
		}},
	}
	objs := podObjects{
		configMaps: map[string]*manifests.ConfigMap{
			"cfg":  {Data: map[string]string{"mode": "fast", "level": "3", "bad key": "x", "1st": "y"}, BinaryData: map[string][]byte{"bin": []byte("raw")}},
			"more": {Data: map[string]string{"mode": "slow", "extra": "e"}},
		},
		secrets: map[string]*manifests.Secret{"creds": {Data: map[string][]byte{"password": []byte("s3cret"), "user": []byte("admin")}}},
	}
	dw := downward{hostIP: "192.0.2.1", podIP: func() string { return "10.88.0.7" },
		node: func() (int64, int64) { return 4000, 8 << 30 }}
	cmRef := func(name, key string, opt bool) *manifests.EnvVarSource {
		s := &manifests.EnvVarSource{ConfigMapKeyRef: &manifests.ConfigMapKeySelector{Name: name, Key: key}}
		if opt {
			s.ConfigMapKeyRef.Optional = &tru
		}
		return s
	}
	field := func(p string) *manifests.EnvVarSource {
		return &manifests.EnvVarSource{FieldRef: &manifests.ObjectFieldSelector{FieldPath: p}}
	}
	res := func(r, div, ctr string) *manifests.EnvVarSource {
		return &manifests.EnvVarSource{ResourceFieldRef: &manifests.ResourceFieldSelector{Resource: r, Divisor: manifests.Quantity(div), ContainerName: ctr}}
	}
	tests := []struct {
		name    string
		c       manifests.Container
		want    map[string]string
		skipped []string
		err     string // a configError's text
	}{
		{name: "plain values", c: manifests.Container{Env: []manifests.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: ""}}},
			want: map[string]string{"A": "1", "B": ""}},
		{name: "later env overrides earlier", c: manifests.Container{Env: []manifests.EnvVar{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}},
			want: map[string]string{"A": "2"}},
		{name: "envFrom with prefix, invalid names skipped, later source wins, env overrides",
			c: manifests.Container{
				EnvFrom: []manifests.EnvFromSource{
					{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "cfg"}},
					{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "more"}},
					{Prefix: "DB_", SecretRef: &manifests.SecretEnvSource{Name: "creds"}},
					{Prefix: "P_", ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "cfg"}},
				},
				Env: []manifests.EnvVar{{Name: "level", Value: "override"}},
			},
			want: map[string]string{"mode": "slow", "level": "override", "bin": "raw", "extra": "e",
				"DB_password": "s3cret", "DB_user": "admin",
				"P_mode": "fast", "P_level": "3", "P_bin": "raw", "P_1st": "y"},
			skipped: []string{"1st", "P_bad key", "bad key"}},
		{name: "expansion refers to earlier vars only, $$ escapes",
			c: manifests.Container{
				EnvFrom: []manifests.EnvFromSource{{ConfigMapRef: &manifests.ConfigMapEnvSource{Name: "more"}}},
				Env: []manifests.EnvVar{
					{Name: "URL", Value: "http://$(HOST):$(PORT)/$(extra)"},
					{Name: "HOST", Value: "db"},
					{Name: "PORT", Value: "5432"},
					{Name: "DSN", Value: "$(HOST):$(PORT) $$(HOST) $(NOPE)"},
					{Name: "SELF", Value: "x$(SELF)"},
				}},
			want: map[string]string{"mode": "slow", "extra": "e", "URL": "http://$(HOST):$(PORT)/e", "HOST": "db", "PORT": "5432",
				"DSN": "db:5432 $(HOST) $(NOPE)", "SELF": "x$(SELF)"}},
		{name: "valueFrom values are not expanded",
			c: manifests.Container{Env: []manifests.EnvVar{{Name: "A", Value: "a"},
				{Name: "B", ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.SecretKeySelector{Name: "creds", Key: "user"}}}}},
			want: map[string]string{"A": "a", "B": "admin"}},
		{name: "configMapKeyRef, binaryData, optional missing key and object",
			c: manifests.Container{Env: []manifests.EnvVar{
				{Name: "MODE", ValueFrom: cmRef("cfg", "mode", false)},
				{Name: "BIN", ValueFrom: cmRef("cfg", "bin", false)},
				{Name: "NOKEY", ValueFrom: cmRef("cfg", "nope", true)},
				{Name: "NOCM", ValueFrom: cmRef("gone", "x", true)},
			}},
			want: map[string]string{"MODE": "fast", "BIN": "raw"}},
		{name: "missing configmap", c: manifests.Container{Env: []manifests.EnvVar{{Name: "X", ValueFrom: cmRef("gone", "x", false)}}},
			err: `env X: configmap "gone" not found`},
		{name: "missing key", c: manifests.Container{Env: []manifests.EnvVar{{Name: "X", ValueFrom: cmRef("cfg", "nope", false)}}},
			err: "env X: couldn't find key nope in ConfigMap prod/cfg"},
		{name: "missing secret", c: manifests.Container{Env: []manifests.EnvVar{{Name: "X",
			ValueFrom: &manifests.EnvVarSource{SecretKeyRef: &manifests.SecretKeySelector{Name: "vault", Key: "k"}}}}},
			err: `env X: secret "vault" not found`},
		{name: "missing envFrom secret", c: manifests.Container{EnvFrom: []manifests.EnvFromSource{{SecretRef: &manifests.SecretEnvSource{Name: "vault"}}}},
			err: `secret "vault" not found`},
		{name: "optional envFrom", c: manifests.Container{EnvFrom: []manifests.EnvFromSource{{SecretRef: &manifests.SecretEnvSource{Name: "vault", Optional: &tru}}}},
			want: map[string]string{}},
		{name: "downward API fields",
			c: manifests.Container{Env: []manifests.EnvVar{
				{Name: "NAME", ValueFrom: field("metadata.name")},
				{Name: "NS", ValueFrom: field("metadata.namespace")},
				{Name: "UID", ValueFrom: field("metadata.uid")},
				{Name: "APP", ValueFrom: field("metadata.labels['app']")},
				{Name: "TEAM", ValueFrom: field(`metadata.annotations["team"]`)},
				{Name: "NOLABEL", ValueFrom: field("metadata.labels['nope']")},
				{Name: "NODE", ValueFrom: field("spec.nodeName")},
				{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
				{Name: "HOST_IP", ValueFrom: field("status.hostIP")},
				{Name: "POD_IP", ValueFrom: field("status.podIP")},
				{Name: "ADDR", Value: "$(POD_IP):80"},
			}},
			want: map[string]string{"NAME": "web-1", "NS": "prod", "UID": "uid-1", "APP": "web", "TEAM": "core", "NOLABEL": "",
				"NODE": "n1", "SA": "", "HOST_IP": "192.0.2.1", "POD_IP": "10.88.0.7", "ADDR": "10.88.0.7:80"}},
		{name: "unsupported field", c: manifests.Container{Env: []manifests.EnvVar{{Name: "X", ValueFrom: field("metadata.labels")}}},
			err: `env X: unsupported field path "metadata.labels"`},
		{name: "resource fields with divisors, unset limits are the node's",
			c: manifests.Container{Name: "app",
				Resources: manifests.ResourceRequirements{
					Limits:   manifests.ResourceList{"cpu": "1500m", "memory": "128Mi"},
					Requests: manifests.ResourceList{"cpu": "250m"}},
				Env: []manifests.EnvVar{
					{Name: "CPU", ValueFrom: res("limits.cpu", "", "")},
					{Name: "CPU_M", ValueFrom: res("limits.cpu", "1m", "")},
					{Name: "REQ_CPU", ValueFrom: res("requests.cpu", "", "")},
					{Name: "REQ_MEM", ValueFrom: res("requests.memory", "", "")},
					{Name: "MEM_MI", ValueFrom: res("limits.memory", "1Mi", "")},
					{Name: "MEM", ValueFrom: res("limits.memory", "", "")},
					{Name: "OTHER_MEM", ValueFrom: res("limits.memory", "1Mi", "other")},
					{Name: "OTHER_CPU", ValueFrom: res("limits.cpu", "", "other")},
				}},
			want: map[string]string{"CPU": "2", "CPU_M": "1500", "REQ_CPU": "1", "REQ_MEM": "0", "MEM_MI": "128",
				"MEM": "134217728", "OTHER_MEM": "64", "OTHER_CPU": "4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, order, skipped, err := resolveEnv(pod, &tc.c, objs, dw)
			if tc.err != "" {
				var ce *configError
				if err == nil || err.Error() != tc.err || !errors.As(err, &ce) {
					t.Fatalf("err = %v, want configError %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(env, tc.want) {
				t.Errorf("env = %v\nwant  %v", env, tc.want)
			}
			if len(order) != len(env) {
				t.Errorf("order %v does not list the %d variables once each", order, len(env))
			}
			slices.Sort(skipped)
			if !slices.Equal(skipped, tc.skipped) {
				t.Errorf("skipped = %q, want %q", skipped, tc.skipped)
			}
		})
	}
}

func TestExpandAllCommandAndArgs(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GREETING": "hi", "NAME": "bob"}
	got := expandAll([]string{"echo", "$(GREETING) $(NAME)", "$$(NAME)", "$(UNSET)"}, env)
	want := []string{"echo", "hi bob", "$(NAME)", "$(UNSET)"}
	if !slices.Equal(got, want) {
		t.Errorf("expandAll = %q, want %q", got, want)
	}
	if expandAll(nil, env) != nil {
		t.Error("expandAll(nil) is not nil: the image's command would be replaced")
	}
}

func TestFormatMap(t *testing.T) {
	t.Parallel()
	got := formatMap(map[string]string{"b": `say "hi"`, "a": "1"})
	want := "a=\"1\"\nb=\"say \\\"hi\\\"\""
	if got != want {
		t.Errorf("formatMap = %q, want %q", got, want)
	}
}
