//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of Jobs and CronJobs: declared in Git, run on real
// Podman by `capstan up`, read back through the client commands.

func jobYAML(name string, completions, parallelism, backoffLimit int, script string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
spec:
  completions: %d
  parallelism: %d
  backoffLimit: %d
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: %[5]s
          command: ["sh", "-c", %[6]q]
`, name, completions, parallelism, backoffLimit, e2eImage, script)
}

const cronJobYAML = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "@every 5s"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        metadata:
          labels:
            app: tick
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - name: main
              image: ` + e2eImage + `
              command: ["sh", "-c", "echo tick"]
`

// jobJSON is a Job as `get jobs -o json` prints it.
type jobJSON struct {
	Metadata struct {
		Name            string `json:"name"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Status struct {
		Conditions     []condition `json:"conditions"`
		Active         int         `json:"active"`
		Succeeded      int         `json:"succeeded"`
		Failed         int         `json:"failed"`
		StartTime      string      `json:"startTime"`
		CompletionTime string      `json:"completionTime"`
	} `json:"status"`
}

func (j jobJSON) is(cond string) bool {
	c := findCond(j.Status.Conditions, cond)
	return c != nil && c.Status == "True"
}

func (e *e2e) jobs() (map[string]jobJSON, error) {
	var list struct {
		Items []jobJSON `json:"items"`
	}
	if err := e.getJSON(&list, "get", "jobs", "-o", "json"); err != nil {
		return nil, err
	}
	m := map[string]jobJSON{}
	for _, j := range list.Items {
		m[j.Metadata.Name] = j
	}
	return m, nil
}

// tableRow returns the cells of an object's row in `get KIND`.
func (e *e2e) tableRow(kind, name string) ([]string, error) {
	out, stderr, err := e.cli("get", kind)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w (%s)", kind, err, stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f, nil
		}
	}
	return nil, fmt.Errorf("no row for %s in %q", name, out)
}

func TestE2EJobsAndCronJobs(t *testing.T) {
	e := newE2E(t)
	e.repo.write("batch.yaml", jobYAML("batch", 3, 2, 6, "echo done"))
	e.repo.write("fails.yaml", jobYAML("fails", 1, 1, 1, "echo failing; exit 1"))
	e.repo.write("tick.yaml", cronJobYAML)
	e.repo.commit("a job, a failing job and a cron job")
	e.startUp()

	// Three completions, two at a time.
	checkFor(t, 90*time.Second, "job batch Complete", func() error {
		jobs, err := e.jobs()
		if err != nil {
			return err
		}
		j, ok := jobs["batch"]
		if !ok {
			return fmt.Errorf("no job batch among %d", len(jobs))
		}
		if !j.is("Complete") || j.Status.Succeeded != 3 || j.Status.Active != 0 || j.Status.CompletionTime == "" {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})
	pods, err := e.pods("batch")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 {
		t.Fatalf("%d pods of batch, want 3", len(pods))
	}
	for _, p := range pods {
		if p.Status.Phase != "Succeeded" || p.Metadata.Labels["job-name"] != "batch" {
			t.Fatalf("pod %s: phase %s, labels %v", p.Metadata.Name, p.Status.Phase, p.Metadata.Labels)
		}
	}
	row, err := e.tableRow("jobs", "batch")
	if err != nil {
		t.Fatal(err)
	}
	if row[1] != "Complete" || row[2] != "3/3" {
		t.Fatalf("get jobs row %v, want Complete 3/3", row)
	}

	// A failing pod is replaced once (backoffLimit 1), after a 10 s back-off.
	checkFor(t, 90*time.Second, "job fails Failed", func() error {
		jobs, err := e.jobs()
		if err != nil {
			return err
		}
		j := jobs["fails"]
		c := findCond(j.Status.Conditions, "Failed")
		if c == nil || c.Status != "True" || c.Reason != "BackoffLimitExceeded" || j.Status.Failed != 2 {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})
	if row, err := e.tableRow("jobs", "fails"); err != nil || row[1] != "Failed" {
		t.Fatalf("get jobs row %v (%v), want Failed", row, err)
	}

	// The CronJob makes a Job every 5 s and keeps one finished.
	seen := map[string]bool{}
	checkFor(t, 60*time.Second, "three jobs of tick", func() error {
		jobs, err := e.jobs()
		if err != nil {
			return err
		}
		for name, j := range jobs {
			if len(j.Metadata.OwnerReferences) == 1 && j.Metadata.OwnerReferences[0].Kind == "CronJob" && j.Metadata.OwnerReferences[0].Name == "tick" {
				seen[name] = true
			}
		}
		if len(seen) < 3 {
			return fmt.Errorf("jobs of tick so far: %v", seen)
		}
		return nil
	})
	checkFor(t, 20*time.Second, "tick's history pruned to 1", func() error {
		jobs, err := e.jobs()
		if err != nil {
			return err
		}
		complete, total := 0, 0
		for name, j := range jobs {
			if strings.HasPrefix(name, "tick-") {
				total++
				if j.is("Complete") {
					complete++
				}
			}
		}
		if complete > 1 || total > 2 {
			return fmt.Errorf("%d jobs of tick, %d complete; want at most 1 kept", total, complete)
		}
		return nil
	})
	row, err = e.tableRow("cronjobs", "tick")
	if err != nil {
		t.Fatal(err)
	}
	if row[1] != "@every" || row[2] != "5s" || row[3] != "<none>" || row[4] != "false" {
		t.Fatalf("get cronjobs row %v", row)
	}
}
