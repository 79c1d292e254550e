package controllers

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/reconciler/workqueue"
)

func TestParseControllers(t *testing.T) {
	all, err := ParseControllers(nil)
	if err != nil || len(all) != len(ControllerNames()) {
		t.Fatalf("empty list: %v, %v", all, err)
	}
	for _, n := range ControllerNames() {
		if !all[n] {
			t.Errorf("empty list leaves %s out", n)
		}
	}
	got, err := ParseControllers([]string{"*", "-scheduler", "-nodelifecycle"})
	if err != nil {
		t.Fatal(err)
	}
	if got["scheduler"] || got["nodelifecycle"] || !got["replicaset"] || !got["gc"] {
		t.Errorf("*,-scheduler,-nodelifecycle: %v", got)
	}
	only, err := ParseControllers([]string{"scheduler"})
	if err != nil || len(only) != 1 || !only["scheduler"] {
		t.Errorf("scheduler alone: %v, %v", only, err)
	}
	if _, err := ParseControllers([]string{"*", "-shceduler"}); err == nil || !strings.Contains(err.Error(), `"-shceduler"`) {
		t.Errorf("a misspelt name: %v", err)
	}
}

// A resync is spread over its period: each slot re-queues a part of the
// keys, and the slots together re-queue every key once.
func TestResyncIsSpreadOverSlots(t *testing.T) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "Pod.default.web-" + strconv.Itoa(i)
	}
	c := &controller{queue: workqueue.New(), resync: func(keep func(string) bool) []string {
		var out []string
		for _, k := range keys {
			if keep(k) {
				out = append(out, k)
			}
		}
		return out
	}}
	defer c.queue.Close()
	const slots = 10
	seen := map[string]int{}
	for slot := range uint32(slots) {
		resyncSlot([]*controller{c}, slot, slots)
		n := c.queue.Len()
		if n == 0 || n > 3*len(keys)/slots {
			t.Fatalf("slot %d re-queued %d of %d keys", slot, n, len(keys))
		}
		for c.queue.Len() > 0 {
			k, _ := c.queue.Get()
			seen[k]++
			c.queue.Done(k)
		}
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Fatalf("%s re-queued %d times over the period", k, seen[k])
		}
	}
	if got := resyncSlots(500 * time.Millisecond); got != 1 {
		t.Fatalf("a period under a second is %d slots, want 1", got)
	}
	if got := resyncSlots(30 * time.Second); got != 10 {
		t.Fatalf("30s is %d slots, want 10", got)
	}
}
