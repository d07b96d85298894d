package cli

import (
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
)

// TestRunExitCode is the run's exit-code ranking as a table: each service's
// outcome alone (serviceExitCode), then the most serious of several
// (runExitCode): 6 > 9 > 5 > 7 > 10 > 0, as the README's Exit codes say.
func TestRunExitCode(t *testing.T) {
	sr := func(o deploy.Outcome, mods ...func(*deploy.ServiceResult)) deploy.ServiceResult {
		s := deploy.ServiceResult{Outcome: o}
		for _, m := range mods {
			m(&s)
		}
		return s
	}
	problem := func(s *deploy.ServiceResult) { s.Problem = true }
	forbidden := func(s *deploy.ServiceResult) { s.Forbidden = true }
	tests := []struct {
		name     string
		services []deploy.ServiceResult
		want     ExitCode
	}{
		{"no services", nil, ExitOK},
		{"deployed, verified, up to date, soaked", []deploy.ServiceResult{sr(deploy.OutcomeDeployed), sr(deploy.OutcomeVerified), sr(deploy.OutcomeUpToDate), sr(deploy.OutcomeSoaked)}, ExitOK},
		{"a quiet skip", []deploy.ServiceResult{sr(deploy.OutcomeSkipped)}, ExitOK},
		{"a skip that is a problem", []deploy.ServiceResult{sr(deploy.OutcomeSkipped, problem)}, ExitServiceProblem},
		{"a planned problem (--dry-run)", []deploy.ServiceResult{sr(deploy.OutcomePlanned, problem)}, ExitServiceProblem},
		{"not run", []deploy.ServiceResult{sr(deploy.OutcomeNotRun)}, ExitServiceProblem},
		{"unverified", []deploy.ServiceResult{sr(deploy.OutcomeUnverified)}, ExitServiceProblem},
		{"rolled back", []deploy.ServiceResult{sr(deploy.OutcomeRolledBack)}, ExitDeployFailed},
		{"failed, auto-rollback off", []deploy.ServiceResult{sr(deploy.OutcomeFailed)}, ExitDeployFailed},
		{"rollback failed", []deploy.ServiceResult{sr(deploy.OutcomeRollbackFailed)}, ExitRollbackFailed},
		{"superseded", []deploy.ServiceResult{sr(deploy.OutcomeSuperseded)}, ExitSuperseded},
		{"forbidden turns a failure into 9", []deploy.ServiceResult{sr(deploy.OutcomeRolledBack, forbidden)}, ExitForbidden},
		{"forbidden turns a problem into 9", []deploy.ServiceResult{sr(deploy.OutcomeNotRun, forbidden)}, ExitForbidden},
		{"forbidden leaves a success 0", []deploy.ServiceResult{sr(deploy.OutcomeDeployed, forbidden)}, ExitOK},
		{"forbidden leaves a failed rollback 6", []deploy.ServiceResult{sr(deploy.OutcomeRollbackFailed, forbidden)}, ExitRollbackFailed},
		{"7 over 10", []deploy.ServiceResult{sr(deploy.OutcomeSuperseded), sr(deploy.OutcomeUnverified)}, ExitServiceProblem},
		{"5 over 7", []deploy.ServiceResult{sr(deploy.OutcomeSkipped, problem), sr(deploy.OutcomeRolledBack)}, ExitDeployFailed},
		{"9 over 5", []deploy.ServiceResult{sr(deploy.OutcomeRolledBack), sr(deploy.OutcomeNotRun, forbidden)}, ExitForbidden},
		{"6 over 9", []deploy.ServiceResult{sr(deploy.OutcomeFailed, forbidden), sr(deploy.OutcomeRollbackFailed)}, ExitRollbackFailed},
		{"order does not matter", []deploy.ServiceResult{sr(deploy.OutcomeRollbackFailed), sr(deploy.OutcomeSuperseded), sr(deploy.OutcomeDeployed)}, ExitRollbackFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runExitCode(&deploy.Result{Services: tt.services}); got != tt.want {
				t.Errorf("runExitCode = %d, want %d", got, tt.want)
			}
		})
	}
}
