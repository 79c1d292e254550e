package fake_test

import (
	"context"
	"errors"
	"testing"

	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
)

func TestAnyImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		any     bool
		present bool
	}{
		{"images must be added", false, false},
		{"every image is present", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fake.New(fake.Options{AnyImage: tc.any})
			ok, err := r.ImageExists(ctx, "example.com/never/added:1")
			if err != nil || ok != tc.present {
				t.Fatalf("ImageExists = %v, %v; want %v", ok, err, tc.present)
			}
			pod, err := r.CreatePod(ctx, node.PodConfig{Name: "p"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.CreateContainer(ctx, pod, node.ContainerConfig{Name: "c", Image: "example.com/never/added:1"})
			if tc.present && err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			if !tc.present && !errors.Is(err, node.ErrNotFound) {
				t.Fatalf("CreateContainer of a missing image: %v, want ErrNotFound", err)
			}
		})
	}
}
