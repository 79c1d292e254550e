package writeback

import (
	"strings"
	"testing"

	yaml "gopkg.in/yaml.v3"

	"github.com/capstan-io/capstan/manifests"
)

func TestTemplateNodeDropsHashLabel(t *testing.T) {
	rs := &manifests.ReplicaSet{}
	rs.Spec.Template.Labels = map[string]string{"app": "web", manifests.LabelPodTemplateHash: "abc"}
	rs.Spec.Template.Spec.Containers = []manifests.Container{{Name: "main", Image: "img:1"}}
	n, err := templateNode(rs)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := yaml.Marshal(n)
	if strings.Contains(string(b), "pod-template-hash") || !strings.Contains(string(b), "image: img:1") || strings.Contains(string(b), "{") || strings.Contains(string(b), `""`) {
		t.Errorf("template:\n%s", b)
	}
	if rs.Spec.Template.Labels[manifests.LabelPodTemplateHash] != "abc" {
		t.Error("templateNode changed the ReplicaSet")
	}
}
