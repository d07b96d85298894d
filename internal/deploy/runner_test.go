package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// The per-service state machine of `autodeploy run` (issue 17: "unit tests
// of the per-service state machine with client-go's fake clientsets, one
// row per observed item"), driven through (*Runner).Run against
// fakeCluster: what the cluster shows for the new image in, the outcome,
// the verdict's cause and the marks written out.

var (
	fcNow = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	aaa   = repo + ":sha-aaa"
	bbb   = repo + ":sha-bbb"
)

// Pod states of the new revision.
func waitingIn(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: fcName,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}}
	}
}

func unschedulableBy(msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}}}
	}
}

type runnerRow struct {
	name string
	// target is the policy's image (bbb when empty); the Deployment runs
	// aaa at revision 1.
	target string
	gitops bool
	// behave is what the cluster shows for target.
	behave behaviour
	// service adjusts the service (its health check, its timeout).
	service func(*testing.T, *config.Service)
	// health replaces the health check (nil: health.Check).
	health func(ctx context.Context, h config.Health, image, tag string) error
	// setup adds reactors, seeds a state, before the run.
	setup func(*testing.T, *fakeCluster)

	outcome Outcome
	// errHas, errHasNot: parts of the service's error.
	errHas, errHasNot []string
	// cause: the retry mark's cause for target; "" wants no retry mark.
	cause rollout.Cause
	// evidence: part of the retry mark's evidence.
	evidence string
	// failed wants the failed-image mark for target.
	failed bool
	// applied: the images the run's patches rolled out, in order.
	applied []string
	// changeCause: part of kubernetes.io/change-cause afterwards.
	changeCause string
	// check asserts what is particular to the row.
	check func(*testing.T, *fakeCluster, ServiceResult, string)
}

// annotationsHaveNot: the marks every reader of Deployments sees hold
// none of parts.
func annotationsHaveNot(parts ...string) func(*testing.T, *fakeCluster, ServiceResult, string) {
	return func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
		t.Helper()
		ann := c.deployment().Annotations
		for _, k := range []string{AnnFailedImage, AnnRetry, rollout.ChangeCauseAnnotation} {
			for _, p := range parts {
				if strings.Contains(ann[k], p) {
					t.Errorf("%s = %q holds %q", k, ann[k], p)
				}
			}
		}
	}
}

func TestRunnerStateMachine(t *testing.T) {
	healthy := func(context.Context, config.Health, string, string) error { return nil }
	withHealth := func(_ *testing.T, s *config.Service) {
		s.Health = &config.Health{URL: config.Secret{Value: "http://api-gateway.apps/health"}, ExpectStatus: 200}
	}
	quota := `pods "api-gateway-h2-x7k2p" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3`
	cordoned := "0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
	rolledBack := "autodeploy: rolled back from " + bbb
	crash := behaviour{pod: waitingIn("CrashLoopBackOff", "back-off 10s restarting failed container="+fcName)}

	rows := []runnerRow{
		{
			name: "a healthy image is deployed and verified", service: withHealth, health: healthy,
			outcome: OutcomeDeployed, applied: []string{bbb}, changeCause: "autodeploy: " + aaa + " -> " + bbb,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if ann := c.deployment().Annotations; ann[AnnVerified] != "true" || ann[AnnDeployedImage] != bbb {
					t.Errorf("marks after a verified deploy: verified %q, deployed-image %q", ann[AnnVerified], ann[AnnDeployedImage])
				}
			},
		},
		{
			name: "a conflict on the verified mark's write reads the Deployment again and writes again",
			setup: func(t *testing.T, c *fakeCluster) {
				failOnce(t, c, "patch", "deployments", func(a k8stesting.Action) bool {
					p := string(a.(k8stesting.PatchAction).GetPatch())
					return strings.Contains(p, "verified\"") && strings.Contains(p, `"value":"true"`)
				}, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, fcName, errors.New("the object has been modified")))
			},
			outcome: OutcomeDeployed, applied: []string{bbb}, changeCause: "autodeploy: " + aaa + " -> " + bbb,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if v := c.deployment().Annotations[AnnVerified]; v != "true" {
					t.Errorf("verified %q after one conflict; want the mark written on the retry", v)
				}
			},
		},
		{
			name: "a conflict on the rollback's patch reads the Deployment again and rolls back", behave: crash,
			setup: func(t *testing.T, c *fakeCluster) {
				failOnce(t, c, "patch", "deployments", func(a k8stesting.Action) bool {
					return strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), "rolled back from")
				}, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, fcName, errors.New("the object has been modified")))
			},
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, errHasNot: []string{"rollback failed"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		// A promotion from this service reads verified and soak: back on
		// the image verified and soaked before the bad one, it is
		// verified again (it was "not verified there" until another
		// build passed).
		{
			name: "a rollback to the image verified and soaked before the deploy verifies it again", behave: crash,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.seed(aaa, behaviour{}, map[string]string{AnnVerified: "true",
					AnnSoak: mustJSON(SoakMark{Image: aaa, VerifiedAt: fcNow.Add(-time.Hour), Until: fcNow.Add(-50 * time.Minute), Passed: true})})
			},
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				ann := c.deployment().Annotations
				m, ok := ParseSoak(ann)
				if ann[AnnVerified] != "true" || !ok || m.Image != aaa || !m.Passed || !m.VerifiedAt.Equal(fcNow.Add(-time.Hour)) || ann[AnnSoakBefore] != "" {
					t.Errorf("after the rollback: verified %q, soak %+v, soak-before %q: want %s verified again with its own date", ann[AnnVerified], m, ann[AnnSoakBefore], aaa)
				}
			},
		},
		{
			name: "a rollback to an image never verified leaves it unverified", behave: crash,
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if ann := c.deployment().Annotations; ann[AnnVerified] != "" || ann[AnnSoak] != "" {
					t.Errorf("after the rollback: verified %q, soak %q: want no verification claimed", ann[AnnVerified], ann[AnnSoak])
				}
			},
		},
		// Item 1: faults of the cluster are not the image's.
		{
			name: "item 1: a ResourceQuota refusing the surge pod is the cluster's", behave: behaviour{refused: quota},
			outcome: OutcomeRolledBack, errHas: []string{"the cluster, not the image"},
			cause: rollout.CauseCluster, evidence: "exceeded quota: pods, requested: pods=1", applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "item 1: a pod no node can take (every node cordoned) is the cluster's", behave: behaviour{pod: unschedulableBy(cordoned)},
			outcome: OutcomeRolledBack, errHas: []string{"the cluster, not the image"},
			cause: rollout.CauseCluster, evidence: "0/2 nodes are available: 2 node(s) were unschedulable", applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "item 1: a rollout timeout while the image is still pulled blames no one", behave: behaviour{pod: waitingIn("ContainerCreating", "")},
			service: func(_ *testing.T, s *config.Service) { s.RolloutTimeout = 300 * time.Millisecond },
			outcome: OutcomeRolledBack, errHas: []string{"rollout did not finish within 300ms", "ContainerCreating", "an unknown cause, not the image"},
			cause: rollout.CauseUnknown, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "item 1: an expired imagePullSecret (401) is the credentials', and under GitOps the tag is not excluded", gitops: true,
			behave: behaviour{pod: waitingIn("ImagePullBackOff", `Back-off pulling image "`+bbb+`"`)},
			setup: func(_ *testing.T, c *fakeCluster) {
				c.event("api-gateway-h2-1", `Failed to pull image "`+bbb+`": failed to pull and unpack image "`+bbb+`": failed to resolve reference "`+bbb+`": pulling from host ghcr.io failed with status code [manifests sha-bbb]: 401 Unauthorized`)
			},
			outcome: OutcomeRolledBack, errHas: []string{"credentials", "not the image"},
			cause: rollout.CauseCredentials, evidence: "pulling from host ghcr.io failed", applied: []string{bbb, aaa}, changeCause: rolledBack,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				// The evidence is cut at 300 characters, before the status
				// here; the mark's reason has the whole message.
				if rt, _ := ParseRetry(c.deployment().Annotations); !strings.Contains(rt.Reason, "401 Unauthorized") || !strings.Contains(rt.Evidence, "401 Unauthorized") {
					t.Errorf("retry reason %q or evidence %q (what status shows) does not say 401 Unauthorized", rt.Reason, rt.Evidence)
				}
			},
		},
		// Item 2: the classifier reads the registry's answer, not the
		// reference it quotes.
		{
			name: "item 2: a 503 for a repository called forbidden-words is the registry's", target: "registry.local/team/forbidden-words:flaky-1",
			behave:  behaviour{pod: waitingIn("ErrImagePull", `failed to pull and unpack image "registry.local/team/forbidden-words:flaky-1": failed to resolve reference "registry.local/team/forbidden-words:flaky-1": unexpected status from HEAD request to https://registry.local/v2/team/forbidden-words/manifests/flaky-1: 503 Service Unavailable`)},
			outcome: OutcomeRolledBack, errHas: []string{"the registry, not the image"},
			cause: rollout.CauseRegistry, evidence: "503 Service Unavailable", applied: []string{"registry.local/team/forbidden-words:flaky-1", aaa},
		},
		{
			name: "item 2: a 503 for a tag flaky-fix-access-denied-page is the registry's", target: repo + ":flaky-fix-access-denied-page",
			behave:  behaviour{pod: waitingIn("ErrImagePull", `rpc error: code = Unknown desc = failed to pull and unpack image "`+repo+`:flaky-fix-access-denied-page": pulling `+repo+`:flaky-fix-access-denied-page: 503 Service Unavailable`)},
			outcome: OutcomeRolledBack, errHas: []string{"the registry, not the image"},
			cause: rollout.CauseRegistry, evidence: "503 Service Unavailable", applied: []string{repo + ":flaky-fix-access-denied-page", aaa},
		},
		// Item 3: autodeploy's own setup is not the image's.
		{
			name: "item 3: a missing health credential stops the deploy before the patch (item 10: told once)",
			service: func(t *testing.T, s *config.Service) {
				t.Setenv("AUTODEPLOY_TEST_RUNNER_TOKEN", "")
				s.Health = &config.Health{URL: config.Secret{Value: "http://api-gateway.apps/health"}, Authorization: config.Secret{Env: "AUTODEPLOY_TEST_RUNNER_TOKEN"}, ExpectStatus: 200}
			},
			health:  health.Check, // were it sent, it would fail for the credential
			outcome: OutcomeSkipped,
			check: func(t *testing.T, c *fakeCluster, sr ServiceResult, _ string) {
				if !sr.Problem || !strings.Contains(sr.Reason, "AUTODEPLOY_TEST_RUNNER_TOKEN") {
					t.Errorf("decision %+v: want a problem naming the variable", sr.Decision)
				}
				if a := c.deployment().Annotations[AnnAlerted]; !strings.HasPrefix(a, "setup:") || !sr.NewProblem {
					t.Errorf("alerted = %q, new problem %v; want the setup problem, news", a, sr.NewProblem)
				}
				// Item 10: the next run hears of the standing problem once.
				s := svc()
				s.Health = &config.Health{URL: config.Secret{Value: "http://api-gateway.apps/health"}, Authorization: config.Secret{Env: "AUTODEPLOY_TEST_RUNNER_TOKEN"}, ExpectStatus: 200}
				res, err := c.runner(s, health.Check, &bytes.Buffer{}).Run(t.Context(), "next", Options{NoReconcile: true})
				if err != nil || len(res.Services) != 1 {
					t.Fatalf("next run: %v, %+v", err, res)
				}
				if next := res.Services[0]; next.Outcome != OutcomeSkipped || next.NewProblem {
					t.Errorf("next run: %s, new problem %v; want skipped, not news", next.Outcome, next.NewProblem)
				}
			},
		},
		{
			name: "item 3: a health credential gone between the preflight and the check is autodeploy's setup", service: withHealth,
			health: func(context.Context, config.Health, string, string) error {
				return health.Preflight(config.Health{URL: config.Secret{Value: "http://x/"}, Authorization: config.Secret{File: "/nonexistent/autodeploy-runner-test-token"}})
			},
			outcome: OutcomeRolledBack, errHas: []string{"autodeploy's setup, not the image"},
			cause: rollout.CauseSetup, evidence: "Authorization header", applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "a health check that never answers blames no one", service: withHealth,
			health: func(context.Context, config.Health, string, string) error {
				return errors.New(`Get "http://api-gateway.apps/health": dial tcp 10.43.0.10:80: connect: connection refused`)
			},
			outcome: OutcomeRolledBack, errHas: []string{"an unknown cause, not the image"},
			cause: rollout.CauseUnknown, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		// Evidence against the image: remembered as failed.
		{
			name: "a health check answering wrong is the image's", service: withHealth,
			health: func(context.Context, config.Health, string, string) error {
				return health.WrongAnswer("health check http://api-gateway.apps/health failed for 30s: status 500, want 200")
			},
			outcome: OutcomeRolledBack, errHas: []string{"status 500, want 200"}, errHasNot: []string{"not the image"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "a CrashLoopBackOff of the new revision is the image's", behave: crash,
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, errHasNot: []string{"not the image"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "a manifest not found is the image's, and under GitOps its tag is excluded", gitops: true,
			behave:  behaviour{pod: waitingIn("ErrImagePull", `failed to pull and unpack image "`+bbb+`": failed to resolve reference "`+bbb+`": `+bbb+`: not found`)},
			outcome: OutcomeRolledBack, errHas: []string{"not found"}, errHasNot: []string{"not the image"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		// Item 5: under GitOps the failed tag's exclusion starts at the
		// verdict, beside the rollback's wait, not after it. The fake makes
		// the rollback converge only once the exclusion is written (Flux
		// would otherwise apply the bad tag again meanwhile): an exclusion
		// deferred until after the wait leaves the rollback unfinished at
		// its rolloutTimeout (a bound, reached only when broken).
		{
			name: "item 5: under GitOps the exclusion is written while the rollback waits", gitops: true, behave: crash,
			service: func(_ *testing.T, s *config.Service) { s.RolloutTimeout = 5 * time.Second },
			setup: func(t *testing.T, c *fakeCluster) {
				c.behave[aaa] = behaviour{pod: waitingIn("ContainerCreating", "")}
				c.dyn.PrependReactor("patch", "imagerepositories", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `sha-bbb$`) {
						c.settle(aaa, behaviour{})
					}
					return false, nil, nil
				})
			},
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, errHasNot: []string{"rollback failed"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		// Item 8: the exclusionList stays under Flux's cap.
		{
			name: "item 8: under GitOps with the exclusionList full, autodeploy's oldest exclusion makes room and others' stay", gitops: true, behave: crash,
			setup: func(t *testing.T, c *fakeCluster) {
				var list []any
				for i := range gitops.MaxExclusionList - 1 {
					list = append(list, fmt.Sprintf("^someone-%02d$", i))
				}
				list = append(list, "^sha-old$")
				u, err := c.dyn.Resource(fcRepos).Namespace("flux-system").Get(t.Context(), fcName, metav1.GetOptions{})
				c.must(err)
				c.must(unstructured.SetNestedSlice(u.Object, list, "spec", "exclusionList"))
				u.SetAnnotations(map[string]string{gitops.AnnExclusions: mustJSON([]gitops.Exclusion{{Pattern: "^sha-old$", Tag: "sha-old", Service: svc().Name, At: fcNow.Add(-time.Hour)}})})
				_, err = c.dyn.Resource(fcRepos).Namespace("flux-system").Update(t.Context(), u, metav1.UpdateOptions{})
				c.must(err)
			},
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				l := c.exclusionList()
				if len(l) != gitops.MaxExclusionList || !slices.Contains(l, "^sha-bbb$") || slices.Contains(l, "^sha-old$") || !slices.Contains(l, "^someone-00$") {
					t.Errorf("exclusionList %q: want %d patterns, the failed tag in, autodeploy's oldest out, every other's kept", l, gitops.MaxExclusionList)
				}
			},
		},
		// Item 4: a retry mark for the image Flux applied again from git.
		{
			name: "item 4: under GitOps, the retried image applied again and still failing is a problem, not up to date", gitops: true, target: bbb,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.seed(bbb, behaviour{pod: waitingIn("ImagePullBackOff", `Back-off pulling image "`+bbb+`"`)}, map[string]string{
					AnnRetry: mustJSON(Retry{Image: bbb, Cause: string(rollout.CauseRegistry), Reason: "503", Attempts: 1, After: fcNow.Add(time.Minute)})})
			},
			outcome: OutcomeSkipped, cause: rollout.CauseRegistry,
			check: func(t *testing.T, c *fakeCluster, sr ServiceResult, _ string) {
				if sr.Action != Skip || !sr.Problem || !strings.Contains(sr.Reason, "whose last try failed because of the registry") {
					t.Errorf("decision %+v: want a problem about the retried image", sr.Decision)
				}
				if a := c.deployment().Annotations[AnnAlerted]; a != "retry-running:"+bbb {
					t.Errorf("alerted = %q", a)
				}
			},
		},
		{
			name: "item 4: under GitOps, once the retry's backoff passed, the retried image is verified and its failure recorded, not undone", gitops: true, target: bbb,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.seed(bbb, behaviour{pod: waitingIn("ImagePullBackOff", `Back-off pulling image "`+bbb+`"`)}, map[string]string{
					AnnRetry: mustJSON(Retry{Image: bbb, Cause: string(rollout.CauseRegistry), Reason: "503", Attempts: 1, After: fcNow.Add(-time.Second)})})
				c.event("api-gateway-h2-1", `Failed to pull image "`+bbb+`": failed to pull and unpack image "`+bbb+`": unexpected status from HEAD request: 503 Service Unavailable`)
			},
			outcome: OutcomeFailed, errHas: []string{"not autodeploy's rollout: left as it is"},
			cause: rollout.CauseRegistry, evidence: "503 Service Unavailable",
			check: func(t *testing.T, c *fakeCluster, sr ServiceResult, _ string) {
				if sr.Action != Verify {
					t.Errorf("action %s, want verify", sr.Action)
				}
				if rt, _ := ParseRetry(c.deployment().Annotations); rt.Attempts != 2 {
					t.Errorf("retry attempts %d, want 2", rt.Attempts)
				}
			},
		},
		{
			name: "item 4: under GitOps, the retried image applied again and running is verified, its retry mark cleared", gitops: true, target: bbb,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.seed(bbb, behaviour{}, map[string]string{
					AnnRetry: mustJSON(Retry{Image: bbb, Cause: string(rollout.CauseRegistry), Reason: "503", Attempts: 1, After: fcNow.Add(time.Minute)})})
			},
			outcome: OutcomeVerified,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if v := c.deployment().Annotations[AnnVerified]; v != "true" {
					t.Errorf("verified = %q", v)
				}
			},
		},
		// Item 6: success lets "bring git along" finish. The automation
		// commits after the rollout completed (here: while the health check
		// runs); the run still has the GitRepository fetch it.
		{
			name: "item 6: under GitOps a deploy that succeeds at once still waits for the automation and asks for the fetch", gitops: true,
			service: withHealth,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.gitOpsSources("sha-aaa")
				c.health = func(context.Context, config.Health, string, string) error {
					c.automationWrites("sha-bbb")
					return nil
				}
			},
			outcome: OutcomeDeployed, applied: []string{bbb}, changeCause: "autodeploy: " + aaa + " -> " + bbb,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, log string) {
				if c.fetchAsked() == "" {
					t.Error("the GitRepository was never asked to fetch the automation's commit")
				}
				if strings.Contains(log, "git does not follow") {
					t.Errorf("a warning although git followed:\n%s", log)
				}
			},
		},
		// The soak counts from the rollout's verification: dated after the
		// wait for git (bb962a6), a crash in those seconds escaped both the
		// rollout and the soak (TestPromotionUnderGitOps on 1.28/kine).
		{
			name: "under GitOps the soak counts from the verification, not from after git followed", gitops: true,
			// A 5 s soak: dated from the verification it is over when git
			// has followed, and this run records it passed; dated 8 s later
			// it would still be soaking.
			service: func(t *testing.T, s *config.Service) { withHealth(t, s); s.Soak = 5 * time.Second },
			setup: func(_ *testing.T, c *fakeCluster) {
				c.gitOpsSources("sha-aaa")
				c.health = func(context.Context, config.Health, string, string) error {
					c.automationWrites("sha-bbb")
					return nil
				}
				// Git follows 8 s after the verification.
				c.dyn.PrependReactor("patch", "gitrepositories", func(k8stesting.Action) (bool, runtime.Object, error) {
					c.elapsed.Store(int64(8 * time.Second))
					return false, nil, nil
				})
			},
			outcome: OutcomeDeployed, applied: []string{bbb}, changeCause: "autodeploy: " + aaa + " -> " + bbb,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if c.fetchAsked() == "" {
					t.Fatal("the GitRepository was never asked to fetch: the clock never moved, the row proves nothing")
				}
				m, ok := ParseSoak(c.deployment().Annotations)
				if !ok || !m.VerifiedAt.Equal(fcNow) || !m.Until.Equal(fcNow.Add(5*time.Second)) || !m.Passed {
					t.Errorf("soak %+v: want it verified at %s, the end of the rollout's check, and passed 5 s later", m, fcNow.Format(time.RFC3339))
				}
			},
		},
		// Item 7: a reconcile lever whose hold was deleted by hand.
		{
			name: "item 7: a reconcile lever no hold explains is released from the Deployment and its ReplicaSet copy", gitops: true, target: aaa,
			setup: func(_ *testing.T, c *fakeCluster) {
				lever := map[string]string{}
				gitops.DisableReconcile(lever, gitops.ReconcileRecord{By: "ops", Reason: "rollback", At: fcNow.Add(-time.Hour), Kustomization: "flux-system/apps"})
				d := c.deployment()
				maps.Copy(d.Annotations, lever)
				c.must(c.kube.Tracker().Update(fcDeployments, d, "apps"))
				obj, err := c.kube.Tracker().Get(fcReplicaSets, "apps", fcName+"-h1")
				c.must(err)
				rs := obj.(*appsv1.ReplicaSet)
				maps.Copy(rs.Annotations, lever)
				c.must(c.kube.Tracker().Update(fcReplicaSets, rs, "apps"))
			},
			outcome: OutcomeUpToDate,
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				obj, err := c.kube.Tracker().Get(fcReplicaSets, "apps", fcName+"-h1")
				c.must(err)
				for what, ann := range map[string]map[string]string{"Deployment": c.deployment().Annotations, "ReplicaSet": obj.(*appsv1.ReplicaSet).Annotations} {
					for _, k := range []string{flux.KustomizeReconcileAnnotation, gitops.AnnReconcileDisabled} {
						if v, ok := ann[k]; ok {
							t.Errorf("%s keeps %s=%s", what, k, v)
						}
					}
				}
			},
		},
		// Item 9: faults during and after the rollout.
		{
			name: "item 9: a Deployment deleted mid-rollout is not run, nothing rolled back", behave: behaviour{pod: waitingIn("ContainerCreating", "")},
			setup: func(_ *testing.T, c *fakeCluster) {
				once := false
				// Once the wait watches (its pod watch opens after the
				// Deployment's), someone deletes the Deployment.
				c.kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
					if !once && len(c.appliedImages()) > 0 {
						once = true
						c.must(c.kube.Tracker().Delete(fcDeployments, "apps", fcName))
					}
					return false, nil, nil
				})
			},
			outcome: OutcomeNotRun, errHas: []string{"was deleted during the rollout"}, applied: []string{bbb},
		},
		{
			name: "item 9: an API blip on the first read after the verdict still ends in the verdict and its mark", behave: crash,
			setup: func(t *testing.T, c *fakeCluster) {
				armed := false
				c.kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
					armed = len(c.appliedImages()) > 0 // the wait's list, which finds the crash
					return false, nil, nil
				})
				failOnce(t, c, "get", "deployments", func(k8stesting.Action) bool { return armed }, apierrors.NewInternalError(errors.New("etcdserver: request timed out")))
			},
			outcome: OutcomeRolledBack, errHas: []string{"CrashLoopBackOff"}, errHasNot: []string{"rollback failed", "can no longer be read"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
		},
		{
			name: "item 9: a person's kubectl set image during the automatic rollback supersedes it", behave: crash,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.afterRollOut = func(c *fakeCluster, img string) {
					if img != aaa {
						return
					}
					d := c.deployment()
					d.Spec.Template.Spec.Containers[0].Image = repo + ":hotfix"
					managedBy("kubectl-set")(d)
					c.must(c.kube.Tracker().Update(fcDeployments, d, "apps"))
				}
			},
			outcome: OutcomeSuperseded, errHas: []string{"CrashLoopBackOff", "kubectl-set", repo + ":hotfix"}, errHasNot: []string{"rollback failed"},
			failed: true, applied: []string{bbb, aaa},
		},
		{
			name: "item 17: an API blip on the read after a superseded verdict still clears autodeploy's marks", behave: behaviour{pod: waitingIn("ContainerCreating", "")},
			setup: func(t *testing.T, c *fakeCluster) {
				armed := false
				// Once the wait watches (its pod watch opens after the
				// Deployment's), a person sets another image: the next read
				// of the Deployment is superseded's.
				c.kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
					if !armed && len(c.appliedImages()) > 0 {
						d := c.deployment()
						d.Spec.Template.Spec.Containers[0].Image = repo + ":hotfix"
						managedBy("kubectl-set")(d)
						c.must(c.kube.Tracker().Update(fcDeployments, d, "apps"))
						armed = true
					}
					return false, nil, nil
				})
				failOnce(t, c, "get", "deployments", func(k8stesting.Action) bool { return armed }, apierrors.NewInternalError(errors.New("etcdserver: request timed out")))
			},
			outcome: OutcomeSuperseded, errHas: []string{"kubectl-set", repo + ":hotfix"}, applied: []string{bbb},
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, log string) {
				if ann := c.deployment().Annotations; ann[AnnDeployedImage] != "" || ann[AnnVerified] != "" || strings.Contains(log, "could not clear") {
					t.Errorf("marks after superseded: deployed-image %q, verified %q; want them cleared (log:\n%s)", ann[AnnDeployedImage], ann[AnnVerified], log)
				}
			},
		},
		{
			name: "item 17: an API blip on the read after a rollback that failed still remembers the image", behave: crash,
			setup: func(t *testing.T, c *fakeCluster) {
				armed := false
				failOnce(t, c, "get", "deployments", func(k8stesting.Action) bool { return armed }, apierrors.NewInternalError(errors.New("etcdserver: request timed out")))
				c.kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), "rolled back from") {
						armed = true
						return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, fcName, errors.New("admission webhook denied the request"))
					}
					return false, nil, nil
				})
			},
			outcome: OutcomeRollbackFailed, errHas: []string{"CrashLoopBackOff", "rollback failed"},
			failed: true, applied: []string{bbb},
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, _ string) {
				if f, ok := ParseFailedImage(c.deployment().Annotations); !ok || f.Image != bbb || f.RollbackError == "" {
					t.Errorf("failed-image mark %+v (%v); want %s remembered with the rollback's error", f, ok, bbb)
				}
			},
		},
		{
			name: "item 17: kustomize-controller applying git's image during the automatic rollback supersedes it, the image still remembered", behave: crash, gitops: true,
			setup: func(_ *testing.T, c *fakeCluster) {
				c.afterRollOut = func(c *fakeCluster, img string) {
					if img != aaa {
						return
					}
					// Git still has the failed tag: Flux applies it again
					// before git follows the rollback.
					d := c.deployment()
					d.Spec.Template.Spec.Containers[0].Image = bbb
					managedBy(flux.KustomizeManager)(d)
					c.must(c.kube.Tracker().Update(fcDeployments, d, "apps"))
				}
			},
			outcome: OutcomeSuperseded, errHas: []string{"CrashLoopBackOff", flux.KustomizeManager, "Flux applied the image again from git"}, errHasNot: []string{"rollback failed"},
			failed: true, applied: []string{bbb, aaa},
		},
		// Item 13.
		{
			name: "item 13: the health answer's body and the URL's credentials land in no annotation",
			service: func(t *testing.T, s *config.Service) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					fmt.Fprint(w, "panic: db password=TOPSECRET-BODY at /srv/app (version sha-aaa)")
				}))
				t.Cleanup(srv.Close)
				u, _ := url.Parse(srv.URL)
				u.User, u.Path, u.RawQuery = url.UserPassword("ops", "HUNTER2-PW"), "/health", "token=S3CR3T-QUERY"
				s.Health = &config.Health{URL: config.Secret{Value: u.String()}, ExpectStatus: 200, ExpectBody: "{{.Tag}}", Timeout: 300 * time.Millisecond, Interval: 20 * time.Millisecond}
			},
			health:  health.Check,
			outcome: OutcomeRolledBack, errHas: []string{`body does not contain "sha-bbb"`}, errHasNot: []string{"TOPSECRET-BODY", "HUNTER2-PW", "S3CR3T-QUERY"},
			failed: true, applied: []string{bbb, aaa}, changeCause: rolledBack,
			check: annotationsHaveNot("TOPSECRET-BODY", "HUNTER2-PW", "S3CR3T-QUERY"),
		},
		{
			name: "item 13: a patch whose answer timed out is unverified, and the next run verifies it",
			setup: func(_ *testing.T, c *fakeCluster) {
				once := false
				c.kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if once {
						return false, nil, nil
					}
					once = true
					// Applied by the server; the answer never came back.
					if _, _, err := c.onPatch(a); err != nil {
						return true, nil, err
					}
					return true, nil, apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
				})
			},
			outcome: OutcomeUnverified, errHas: []string{"the patch's outcome is unknown"}, applied: []string{bbb},
			check: func(t *testing.T, c *fakeCluster, _ ServiceResult, log string) {
				if strings.Contains(log, "nothing changed") {
					t.Errorf("a patch that timed out is logged as changing nothing:\n%s", log)
				}
				if ann := c.deployment().Annotations; ann[AnnVerified] != "false" || ann[AnnDeployedImage] != bbb {
					t.Errorf("marks: verified %q, deployed-image %q; want the patch's unverified marks", ann[AnnVerified], ann[AnnDeployedImage])
				}
				res, err := c.runner(svc(), nil, &bytes.Buffer{}).Run(t.Context(), "next", Options{NoReconcile: true})
				if err != nil || len(res.Services) != 1 || res.Services[0].Outcome != OutcomeVerified {
					t.Fatalf("next run: %v, %+v; want verified", err, res)
				}
				if v := c.deployment().Annotations[AnnVerified]; v != "true" {
					t.Errorf("after the next run: verified %q", v)
				}
			},
		},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			if target == "" {
				target = bbb
			}
			running := aaa
			if tt.target != "" && !strings.HasPrefix(tt.target, repo) {
				running = tt.target[:strings.LastIndex(tt.target, ":")] + ":flaky-0"
			}
			c := newFakeCluster(t, running, target, tt.gitops)
			tt.applied = slices.Clone(tt.applied)
			if running != aaa {
				// The rows' rollback goes back to what ran.
				for i, img := range tt.applied {
					if img == aaa {
						tt.applied[i] = running
					}
				}
			}
			if tt.behave.pod != nil || tt.behave.refused != "" {
				c.behave[target] = tt.behave
			}
			s := svc()
			if tt.service != nil {
				tt.service(t, &s)
			}
			if tt.setup != nil {
				tt.setup(t, c)
			}
			var log bytes.Buffer
			h := tt.health
			if c.health != nil {
				h = c.health
			}
			res, err := c.runner(s, h, &log).Run(t.Context(), "test", Options{NoReconcile: true})
			defer func() {
				if t.Failed() {
					t.Logf("run log:\n%s", log.String())
				}
			}()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(res.Services) != 1 {
				t.Fatalf("services: %+v", res.Services)
			}
			sr := res.Services[0]
			if sr.Outcome != tt.outcome {
				t.Errorf("outcome %s, want %s (error: %s; reason: %s)", sr.Outcome, tt.outcome, sr.Error, sr.Reason)
			}
			for _, p := range tt.errHas {
				if !strings.Contains(sr.Error, p) {
					t.Errorf("error %q does not say %q", sr.Error, p)
				}
			}
			for _, p := range tt.errHasNot {
				if strings.Contains(sr.Error, p) {
					t.Errorf("error %q says %q", sr.Error, p)
				}
			}
			if got := c.appliedImages(); !slices.Equal(got, tt.applied) {
				t.Errorf("rolled out %q, want %q", got, tt.applied)
			}
			d := c.deployment()
			if d == nil {
				if tt.outcome != OutcomeNotRun {
					t.Fatal("the Deployment is gone")
				}
			} else {
				ann := d.Annotations
				f, failed := ParseFailedImage(ann)
				switch {
				case tt.failed && (!failed || f.Image != target):
					t.Errorf("failed-image %q, want %s remembered as failed", ann[AnnFailedImage], target)
				case !tt.failed && failed:
					t.Errorf("failed-image %q: %s is not to blame", ann[AnnFailedImage], f.Image)
				}
				rt, retried := ParseRetry(ann)
				switch {
				case tt.cause == "" && retried:
					t.Errorf("retry mark %q, want none", ann[AnnRetry])
				case tt.cause != "" && (!retried || rt.Image != target || rt.Cause != string(tt.cause)):
					t.Errorf("retry mark %q, want %s to be tried again (cause %s)", ann[AnnRetry], target, tt.cause)
				case tt.evidence != "" && !strings.Contains(rt.Evidence, tt.evidence):
					t.Errorf("retry evidence %q does not say %q", rt.Evidence, tt.evidence)
				}
				if tt.changeCause != "" && !strings.Contains(ann[rollout.ChangeCauseAnnotation], tt.changeCause) {
					t.Errorf("change-cause %q, want %q", ann[rollout.ChangeCauseAnnotation], tt.changeCause)
				}
				if img, _ := rollout.ContainerImage(&d.Spec.Template, fcName); len(tt.applied) > 1 && tt.outcome == OutcomeRolledBack && img != tt.applied[len(tt.applied)-1] {
					t.Errorf("runs %s after the rollback", img)
				}
			}
			if tt.gitops {
				// Only the image's fault excludes its tag from the shared
				// ImageRepository (item 1: every service using it).
				excl := c.exclusionList()
				tag := target[strings.LastIndex(target, ":")+1:]
				if want := tt.failed; slices.Contains(excl, gitops.TagPattern(tag)) != want || (!want && len(excl) > 0) {
					t.Errorf("exclusionList %q; excluded wanted: %v", excl, want)
				}
			}
			if tt.check != nil {
				tt.check(t, c, sr, log.String())
			}
		})
	}
}

// runner is a Runner on the fake cluster for service s: a fixed clock, a
// grace of a millisecond, no Flux wait (flux.reconcileTimeout 0).
func (c *fakeCluster) runner(s config.Service, h func(context.Context, config.Health, string, string) error, log *bytes.Buffer) *Runner {
	return &Runner{
		Kube: c.kube, Dynamic: c.dyn,
		Config: &config.Config{RunTimeout: time.Minute, Services: []config.Service{s}, Flux: config.Flux{Namespace: "flux-system"}},
		Log:    runlog.New(log), Now: c.now, Health: h, Grace: time.Millisecond,
	}
}

// failOnce makes the first verb on resource for which when is true fail
// with err, and fails the test if it never did: a row whose fault never
// happened proves nothing.
func failOnce(t *testing.T, c *fakeCluster, verb, resource string, when func(k8stesting.Action) bool, err error) {
	t.Helper()
	fired := false
	c.kube.PrependReactor(verb, resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fired || !when(a) {
			return false, nil, nil
		}
		fired = true
		return true, nil, err
	})
	t.Cleanup(func() {
		if !fired {
			t.Errorf("the %s of %s never failed: the row proves nothing", verb, resource)
		}
	})
}
