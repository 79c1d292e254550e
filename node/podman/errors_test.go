//go:build remote

package podman

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containers/podman/v5/pkg/errorhandling"

	"github.com/capstan-io/capstan/node"
)

func TestAPIErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want error
	}{
		{&errorhandling.ErrorModel{ResponseCode: 404, Message: "no such container"}, node.ErrNotFound},
		{fmt.Errorf("wrapped: %w", &errorhandling.ErrorModel{ResponseCode: 409}), node.ErrConflict},
		{&errorhandling.PodConflictErrorModel{Errs: []string{"x"}}, node.ErrConflict},
		{&errorhandling.ErrorModel{ResponseCode: 500, Message: "no such container"}, nil},
		{errors.New("no such pod"), nil},
	}
	for _, tc := range tests {
		got := apiErr(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("apiErr(%v) lost the original error", tc.err)
		}
		for _, s := range []error{node.ErrNotFound, node.ErrConflict} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("apiErr(%v) = %v; errors.Is(%v) = %v", tc.err, got, s, errors.Is(got, s))
			}
		}
	}
	if apiErr(nil) != nil {
		t.Error("apiErr(nil) != nil")
	}
}
