package deploy

import (
	"context"
	"maps"
	"slices"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// awaitPolicies waits, on Flux < 2.7, until each configured policy over a
// repository whose rescan found new tags selects what that scan says it
// must (flux.AwaitPolicies): issue 17 item 11, a Flux 2.6 policy is
// written with the old tags before its repository's scan is in. A
// suspended policy is not re-evaluated by Flux, so it is not waited for.
// A policy still behind at the bound is logged: this run deploys what it
// selects, and the next run the scan's tag.
func (r *Runner) awaitPolicies(ctx context.Context, api flux.API, repoOuts []flux.Outcome, policies map[string]*flux.Policy) {
	scans := map[flux.Ref]flux.Scan{}
	for _, o := range repoOuts {
		if o.OK && o.ScanChanged {
			scans[o.Ref] = o.Scan
		}
	}
	var want []flux.Awaited
	for _, key := range slices.Sorted(maps.Keys(policies)) {
		p := policies[key]
		scan, changed := scans[flux.Ref{Namespace: p.RepoNamespace, Name: p.RepoName}]
		if !changed || p.Suspended {
			continue
		}
		tag, _ := p.Order.Expect(scan)
		want = append(want, flux.Awaited{Ref: flux.Ref{Namespace: p.Namespace, Name: p.Name}, Tag: tag})
	}
	for _, l := range flux.AwaitPolicies(ctx, r.Dynamic, api.Policies(), want, PolicyEvaluationBound) {
		r.Log.Warn("ImagePolicy does not select its repository's newest scan yet", "policy", l.Ref.String(), "expected", l.Tag, "selected", l.Selected, "waited", PolicyEvaluationBound)
	}
}
