package notify

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/capstan-io/capstan/sources/internal/sourcetest"
)

func TestJitter(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if got := Jitter(time.Minute, 0.1); got < 54*time.Second || got > 66*time.Second {
			t.Fatalf("Jitter(1m, 10%%) = %v", got)
		}
	}
	if Jitter(0, 0.1) != 0 {
		t.Fatal("Jitter(0) != 0")
	}
}

func TestSendNeverBlocks(t *testing.T) {
	t.Parallel()
	ch := make(chan struct{}, 1)
	Send(ch)
	Send(ch)
	Send(make(chan struct{})) // unbuffered, nobody reading
	if len(ch) != 1 {
		t.Fatalf("len = %d", len(ch))
	}
}

func TestLoop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	trigger := make(chan struct{}, 1)
	var seen []string
	l := &Loop{Interval: time.Hour, Trigger: trigger, Watcher: w, Relevant: func(ev fsnotify.Event) bool {
		seen = append(seen, filepath.Base(ev.Name)) // on the loop's goroutine only
		return filepath.Ext(ev.Name) == ".yaml"
	}}
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, changed) }()

	sourcetest.WaitSignal(t, changed, time.Second, "start signal")
	trigger <- struct{}{}
	sourcetest.WaitSignal(t, changed, time.Second, "trigger")
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".yaml"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sourcetest.WaitSignal(t, changed, time.Second, "a burst of writes")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(seen) < 20 {
		t.Fatalf("Relevant saw %d events, want every one of at least 20", len(seen))
	}
}
