package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// Cron hears a standing problem once (issue 17, item 10): the line names a
// problem when it appears or changes, as its notification does, not every
// two minutes; what went wrong in this run (a failed deploy, a rollout left
// unverified) is always on it. A missing Deployment, with nowhere to keep
// the record, is remembered in the file next to the log.
func TestCronLineHearsAProblemOnce(t *testing.T) {
	missing := func(svc string) deploy.ServiceResult {
		return deploy.ServiceResult{Decision: deploy.Decision{Service: svc, Action: deploy.Skip, Problem: true,
			Reason: "Deployment apps/" + svc + " not found", Alert: deploy.AlertDeploymentMissing + "apps/" + svc}, Outcome: deploy.OutcomeSkipped}
	}
	noPolicy := func(news bool) deploy.ServiceResult {
		return deploy.ServiceResult{Decision: deploy.Decision{Service: "web", Action: deploy.Skip, Problem: true,
			Reason: "ImagePolicy flux-system/web not found", Alert: "problem:ImagePolicy flux-system/web not found"}, Outcome: deploy.OutcomeSkipped, NewProblem: news}
	}
	rolledBack := deploy.ServiceResult{Decision: deploy.Decision{Service: "api", Action: deploy.Deploy}, Outcome: deploy.OutcomeRolledBack, Error: "pod api-1: ImagePullBackOff"}
	unverified := deploy.ServiceResult{Decision: deploy.Decision{Service: "api", Action: deploy.Verify}, Outcome: deploy.OutcomeUnverified, Error: "API unreadable"}
	deployed := func(svc string) deploy.ServiceResult {
		return deploy.ServiceResult{Decision: deploy.Decision{Service: svc, Action: deploy.Deploy}, Outcome: deploy.OutcomeDeployed}
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "autodeploy.log.alerted")
	runs := []struct {
		name     string
		services []deploy.ServiceResult
		line     []string // services the line names; none: no line
	}{
		{name: "problem appears", services: []deploy.ServiceResult{noPolicy(true)}, line: []string{"web skipped"}},
		{name: "problem stands", services: []deploy.ServiceResult{noPolicy(false)}},
		{name: "a failed deploy beside it", services: []deploy.ServiceResult{noPolicy(false), rolledBack}, line: []string{"api rolled-back"}},
		{name: "unverified is this run's", services: []deploy.ServiceResult{unverified}, line: []string{"api unverified"}},
		{name: "unverified again", services: []deploy.ServiceResult{unverified}, line: []string{"api unverified"}},
		{name: "Deployment missing", services: []deploy.ServiceResult{missing("db"), noPolicy(false)}, line: []string{"db skipped"}},
		{name: "still missing", services: []deploy.ServiceResult{missing("db")}},
		{name: "created", services: []deploy.ServiceResult{deployed("db")}},
		{name: "deleted again", services: []deploy.ServiceResult{missing("db")}, line: []string{"db skipped"}},
	}
	for _, run := range runs {
		res := &deploy.Result{Services: run.services}
		heard := heardBefore(record, res, []string{"api", "db", "web"}, nil)
		line := failureLine(res, heard)
		var names []string
		for _, part := range strings.Split(line, "; ") {
			if part != "" {
				names = append(names, strings.SplitN(part, ":", 2)[0])
			}
		}
		if strings.Join(names, ",") != strings.Join(run.line, ",") {
			t.Errorf("%s: line %q, want it to name %v", run.name, line, run.line)
		}
	}
	// A service removed from the config leaves no record behind.
	heardBefore(record, &deploy.Result{}, []string{"api"}, nil)
	if b, err := os.ReadFile(record); err != nil || strings.Contains(string(b), "db") {
		t.Errorf("record %q (%v) still names db", b, err)
	}
	// Without a record file (log.file "-": a pod's log, nobody mails it),
	// a missing Deployment is named every run.
	for i := 0; i < 2; i++ {
		res := &deploy.Result{Services: []deploy.ServiceResult{missing("db")}}
		if line := failureLine(res, heardBefore("", res, []string{"db"}, nil)); !strings.HasPrefix(line, "db skipped") {
			t.Errorf("run %d without a record: line %q", i, line)
		}
	}
}

// A named pipe at <log.file>.alerted blocked the run in its read forever,
// holding the run's lock, and one at its .tmp in the write (issue 18,
// fourth pass): the record is read as config.ReadFile reads and written
// through a new file of its own, and one that is not a regular file is a
// warning, the problem named again.
func TestAlertedRecordThatIsNotAFile(t *testing.T) {
	missing := deploy.ServiceResult{Decision: deploy.Decision{Service: "db", Action: deploy.Skip, Problem: true,
		Reason: "Deployment apps/db not found", Alert: deploy.AlertDeploymentMissing + "apps/db"}, Outcome: deploy.OutcomeSkipped}
	t.Run("record", func(t *testing.T) {
		record := hosttest.Mkfifo(t, filepath.Join(t.TempDir(), "autodeploy.log.alerted"))
		var logged strings.Builder
		var heard map[string]bool
		hosttest.Returns(t, "heardBefore of a named pipe", func() {
			heard = heardBefore(record, &deploy.Result{Services: []deploy.ServiceResult{missing}}, []string{"db"}, runlog.New(&logged))
		})
		if heard["db"] || !strings.Contains(logged.String(), record+" is a named pipe, not a regular file") {
			t.Errorf("heard %v, log %q; want db named, the pipe in a warning", heard, logged.String())
		}
	})
	t.Run("its temporary file", func(t *testing.T) {
		record := filepath.Join(t.TempDir(), "autodeploy.log.alerted")
		hosttest.Mkfifo(t, record+".tmp")
		hosttest.Returns(t, "heardBefore beside a named pipe", func() {
			heardBefore(record, &deploy.Result{Services: []deploy.ServiceResult{missing}}, []string{"db"}, nil)
		})
		if b, err := os.ReadFile(record); err != nil || !strings.Contains(string(b), "apps/db") {
			t.Errorf("record %q (%v), want db's problem in it", b, err)
		}
	})
}
