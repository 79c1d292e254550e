package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestParseCronSchedule(t *testing.T) {
	ny := "America/New_York"
	bad := "Mars/Olympus"
	tests := []struct {
		schedule string
		tz       *string
		err      string
	}{
		{"*/5 * * * *", nil, ""},
		{"@hourly", nil, ""},
		{"@every 2s", nil, ""},
		{"0 9 * * 1-5", &ny, ""},
		{"0 9 * * *", &bad, "timeZone"},
		{"CRON_TZ=UTC 0 9 * * *", &ny, "not allowed"},
		{"0 9 * *", nil, "expected exactly 5 fields"},
		{"61 * * * *", nil, "above maximum"},
	}
	for _, tt := range tests {
		_, err := ParseCronSchedule(tt.schedule, tt.tz)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.schedule, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want one with %q", tt.schedule, err, tt.err)
		}
	}
}

func TestPlanCronJob(t *testing.T) {
	ny := "America/New_York"
	type tc struct {
		name     string
		schedule string
		tz       *string
		created  string
		last     string
		now      string
		deadline time.Duration
		policy   string
		active   int
		suspend  bool

		action    string
		scheduled string
		replace   bool
		tooMany   bool
		missed    int
		next      string
	}
	tests := []tc{
		{name: "before the first time", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", now: "2025-01-01T10:04:59Z",
			next: "2025-01-01T10:05:00Z"},
		{name: "first time reached", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", now: "2025-01-01T10:05:00Z",
			action: CronCreate, scheduled: "2025-01-01T10:05:00Z", missed: 1, next: "2025-01-01T10:10:00Z"},
		{name: "already made", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:07:00Z",
			next: "2025-01-01T10:10:00Z"},
		{name: "down for a while: only the latest runs", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:31:00Z",
			action: CronCreate, scheduled: "2025-01-01T10:30:00Z", missed: 5, next: "2025-01-01T10:35:00Z"},
		{name: "missed beyond the deadline", schedule: "0 * * * *", created: "2025-01-01T00:00:30Z", last: "2025-01-01T09:00:00Z", now: "2025-01-01T10:02:00Z", deadline: time.Minute,
			next: "2025-01-01T11:00:00Z"},
		{name: "within the deadline", schedule: "0 * * * *", created: "2025-01-01T00:00:30Z", last: "2025-01-01T09:00:00Z", now: "2025-01-01T10:00:50Z", deadline: time.Minute,
			action: CronCreate, scheduled: "2025-01-01T10:00:00Z", missed: 1, next: "2025-01-01T11:00:00Z"},
		{name: "deadline bounds the missed count", schedule: "* * * * *", created: "2024-01-01T00:00:00Z", now: "2025-01-01T10:00:30Z", deadline: 200 * time.Second,
			action: CronCreate, scheduled: "2025-01-01T10:00:00Z", missed: 3, next: "2025-01-01T10:01:00Z"},
		{name: "more than 100 missed: warn, still start the latest", schedule: "* * * * *", created: "2025-01-01T00:00:30Z", now: "2025-01-01T10:00:30Z",
			action: CronCreate, scheduled: "2025-01-01T10:00:00Z", tooMany: true, missed: 600, next: "2025-01-01T10:01:00Z"},
		{name: "years missed, irregular schedule", schedule: "30 6-16/4 * * 1-5", created: "2020-01-01T00:00:00Z", now: "2025-01-04T12:00:00Z", // a Saturday
			action: CronCreate, scheduled: "2025-01-03T14:30:00Z", tooMany: true, next: "2025-01-06T06:30:00Z"},
		{name: "@every seconds", schedule: "@every 2s", created: "2025-01-01T10:00:00Z", last: "2025-01-01T10:00:04Z", now: "2025-01-01T10:00:06Z",
			action: CronCreate, scheduled: "2025-01-01T10:00:06Z", missed: 1, next: "2025-01-01T10:00:08Z"},
		{name: "Forbid skips while active", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:10:00Z", policy: "Forbid", active: 1,
			action: CronForbidden, scheduled: "2025-01-01T10:10:00Z", missed: 1, next: "2025-01-01T10:15:00Z"},
		{name: "Forbid starts the skipped time once the active one ends", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:12:00Z", policy: "Forbid",
			action: CronCreate, scheduled: "2025-01-01T10:10:00Z", missed: 1, next: "2025-01-01T10:15:00Z"},
		{name: "Allow runs alongside", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:10:00Z", policy: "Allow", active: 2,
			action: CronCreate, scheduled: "2025-01-01T10:10:00Z", missed: 1, next: "2025-01-01T10:15:00Z"},
		{name: "Replace replaces", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:10:00Z", policy: "Replace", active: 1,
			action: CronCreate, scheduled: "2025-01-01T10:10:00Z", replace: true, missed: 1, next: "2025-01-01T10:15:00Z"},
		{name: "Replace with none active", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", last: "2025-01-01T10:05:00Z", now: "2025-01-01T10:10:00Z", policy: "Replace",
			action: CronCreate, scheduled: "2025-01-01T10:10:00Z", missed: 1, next: "2025-01-01T10:15:00Z"},
		{name: "suspended", schedule: "*/5 * * * *", created: "2025-01-01T10:01:00Z", now: "2025-01-01T10:10:00Z", suspend: true},
		{name: "time zone", schedule: "0 9 * * *", tz: &ny, created: "2025-01-01T00:00:00Z", now: "2025-01-01T14:00:00Z", // 09:00 EST
			action: CronCreate, scheduled: "2025-01-01T14:00:00Z", missed: 1, next: "2025-01-02T14:00:00Z"},
		{name: "time zone, summer time", schedule: "0 9 * * *", tz: &ny, created: "2025-07-01T00:00:00Z", now: "2025-07-01T13:00:00Z", // 09:00 EDT
			action: CronCreate, scheduled: "2025-07-01T13:00:00Z", missed: 1, next: "2025-07-02T13:00:00Z"},
		// Spring forward (2024-03-10, 02:00 EST -> 03:00 EDT): 02:30 does
		// not exist that day and is skipped, as Kubernetes (robfig/cron).
		{name: "DST: a time that does not exist is skipped", schedule: "30 2 * * *", tz: &ny, created: "2024-03-09T08:00:00Z", last: "2024-03-09T07:30:00Z", now: "2024-03-10T12:00:00Z",
			next: "2024-03-11T06:30:00Z"},
		{name: "DST: hourly skips the lost hour", schedule: "0 * * * *", tz: &ny, created: "2024-03-10T05:30:00Z", last: "2024-03-10T06:00:00Z", now: "2024-03-10T07:00:00Z", // 03:00 EDT
			action: CronCreate, scheduled: "2024-03-10T07:00:00Z", missed: 1, next: "2024-03-10T08:00:00Z"},
		// Fall back (2024-11-03, 02:00 EDT -> 01:00 EST): 01:30 happens
		// twice, and runs twice.
		{name: "DST: a repeated time runs the first time", schedule: "30 1 * * *", tz: &ny, created: "2024-11-02T12:00:00Z", now: "2024-11-03T05:30:00Z",
			action: CronCreate, scheduled: "2024-11-03T05:30:00Z", missed: 1, next: "2024-11-03T06:30:00Z"},
		{name: "DST: and the second time", schedule: "30 1 * * *", tz: &ny, created: "2024-11-02T12:00:00Z", last: "2024-11-03T05:30:00Z", now: "2024-11-03T06:30:00Z",
			action: CronCreate, scheduled: "2024-11-03T06:30:00Z", missed: 1, next: "2024-11-04T06:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCronSchedule(tt.schedule, tt.tz)
			if err != nil {
				t.Fatal(err)
			}
			in := CronInput{Schedule: s, Now: mustTime(t, tt.now), Created: mustTime(t, tt.created), Policy: tt.policy, Active: tt.active, Suspend: tt.suspend}
			if tt.last != "" {
				in.LastSchedule = manifests.Ptr(mustTime(t, tt.last))
			}
			if tt.deadline > 0 {
				in.StartingDeadline = &tt.deadline
			}
			p := PlanCronJob(in)
			if p.Action != tt.action || p.ReplaceActive != tt.replace || p.TooManyMissed != tt.tooMany {
				t.Fatalf("plan %+v, want action %q replace %v tooMany %v", p, tt.action, tt.replace, tt.tooMany)
			}
			if tt.scheduled != "" && !p.Scheduled.Equal(mustTime(t, tt.scheduled)) {
				t.Fatalf("scheduled %s, want %s", p.Scheduled.UTC(), tt.scheduled)
			}
			if tt.missed != 0 && p.Missed != tt.missed {
				t.Fatalf("missed %d, want %d", p.Missed, tt.missed)
			}
			switch {
			case tt.next == "" && !p.Next.IsZero():
				t.Fatalf("next %s, want none", p.Next)
			case tt.next != "" && !p.Next.Equal(mustTime(t, tt.next)):
				t.Fatalf("next %s, want %s", p.Next.UTC(), tt.next)
			}
		})
	}
}

// TestMostRecentScheduleMatchesWalk checks the fast path for many missed
// times against walking them all.
func TestMostRecentScheduleMatchesWalk(t *testing.T) {
	for _, spec := range []string{"* * * * *", "*/7 * * * *", "30 6-16/4 * * 1-5", "0 0 29 2 *", "@every 13s", "15 10 * * 0"} {
		s, err := ParseCronSchedule(spec, manifests.Ptr("UTC"))
		if err != nil {
			t.Fatal(err)
		}
		earliest := mustTime(t, "2023-12-31T23:59:00Z")
		for _, now := range []string{"2024-01-01T03:00:00Z", "2024-01-09T12:34:56Z", "2024-03-02T00:00:00Z"} {
			n := mustTime(t, now)
			var want time.Time
			for x := s.Next(earliest); !x.IsZero() && !x.After(n); x = s.Next(x) {
				want = x
			}
			got, _, ok := mostRecentSchedule(s, earliest, n)
			if ok != !want.IsZero() || !got.Equal(want) {
				t.Errorf("%q at %s: got %s %v, want %s", spec, now, got, ok, want)
			}
		}
	}
}

func TestCronJobName(t *testing.T) {
	if got := CronJobName("backup", mustTime(t, "2025-01-01T10:05:00Z")); got != "backup-28928765" {
		t.Errorf("on a minute: %s", got)
	}
	if got := CronJobName("tick", mustTime(t, "2025-01-01T10:05:02Z")); got != "tick-1735725902" {
		t.Errorf("off a minute: %s", got)
	}
}
