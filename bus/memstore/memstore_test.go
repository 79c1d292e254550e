package memstore_test

import (
	"testing"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/bus/storetest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) bus.Store { return memstore.New() })
}
