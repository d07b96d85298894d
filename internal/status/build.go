package status

import (
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// Objects is what Collect read from the cluster, keyed "namespace/name"
// (ReplicaSets and Pods by namespace).
type Objects struct {
	FluxAPI      string
	FluxProblem  string // why Flux objects could not be read
	Deployments  map[string]*appsv1.Deployment
	ReplicaSets  map[string][]appsv1.ReplicaSet
	Pods         map[string][]corev1.Pod
	Policies     map[string]*unstructured.Unstructured
	Repositories map[string]*unstructured.Unstructured
	// Kustomizations named by the Deployments' kustomize.toolkit.fluxcd.io
	// labels (absent: not found), and the ImageUpdateAutomations by
	// namespace; GitOpsProblem says why they could not be read.
	Kustomizations map[string]*unstructured.Unstructured
	Automations    map[string][]unstructured.Unstructured
	GitOpsProblem  string
}

// Local is what status reads on this host: the log and the lock.
type Local struct {
	LastRun    *runlog.Run
	LastRunErr error
	Holder     *lock.Holder
	HolderErr  error // the holder could not be read
	// WatchHolder is the watch lock's record (held or left by a holder
	// that died: WatchHeld says which); WatchErr why it could not be read.
	WatchHolder *lock.Holder
	WatchHeld   bool
	WatchLock   string // the watch lock's name
	WatchErr    error
	Log         []string
}

// Build assembles the report. It is pure: same objects, same clock, same
// report.
func Build(cfg *config.Config, services []config.Service, objs Objects, local Local, now time.Time) *Report {
	r := &Report{SchemaVersion: SchemaVersion, GeneratedAt: now.UTC(), FluxAPI: objs.FluxAPI, Healthy: true,
		LastRun: local.LastRun, RunInProgress: local.Holder, Log: local.Log}
	if local.LastRunErr != nil {
		r.LastRunError = local.LastRunErr.Error()
	}
	if local.HolderErr != nil {
		r.RunInProgressError = local.HolderErr.Error()
	}
	r.Watch = watchOf(local.WatchHolder, local.WatchHeld, local.WatchLock)
	if local.WatchErr != nil {
		r.WatchError = local.WatchErr.Error()
	}
	if r.Watch != nil && !r.Watch.Running {
		r.Healthy = false
	}
	r.Schedule = Schedule{Spec: cfg.Schedule, NextRun: cfg.Next(now).UTC()}
	if r.LastRun != nil {
		// Two scheduled slots have passed since the last run without one.
		r.Schedule.Overdue = now.After(cfg.Next(cfg.Next(r.LastRun.Started))) && r.RunInProgress == nil
	}
	for _, s := range services {
		svc := buildService(cfg, s, objs, now)
		if !svc.OK() {
			r.Healthy = false
		}
		r.Services = append(r.Services, svc)
	}
	r.Pipelines = pipelines(cfg, services, r.Services, objs, now)
	return r
}

// promotion is how src, the source of s's promotion, stands (nil when s
// is not promoted): what it runs, and when autodeploy verified that there.
func promotion(s config.Service, src *deploy.Source) *Promotion {
	if src == nil {
		return nil
	}
	p := &Promotion{From: src.Service.Name, After: s.Promote.After}
	if d := src.Deployment; d != nil {
		p.SourceImage, _ = rollout.ContainerImage(&d.Spec.Template, deploy.ServiceContainer(d, src.Service))
		p.SourceVerified = verification(d, src.Service)
	}
	return p
}

func buildService(cfg *config.Config, s config.Service, objs Objects, now time.Time) Service {
	out := Service{Name: s.Name, Namespace: s.Namespace, Deployment: s.Deployment, Container: s.Container, Sync: SyncUnknown}
	policyKey := s.PolicyNamespace + "/" + s.PolicyName
	var pol *flux.Policy
	if u := objs.Policies[policyKey]; u != nil {
		p := flux.ParsePolicy(u)
		pol = &p
		out.Policy = &Policy{Name: policyKey, LatestImage: p.Latest, Ready: p.Ready, Message: p.Message, Suspended: p.Suspended}
		if repo := objs.Repositories[p.RepoNamespace+"/"+p.RepoName]; repo != nil {
			out.Repository = repository(repo)
		}
	}
	d := objs.Deployments[s.Namespace+"/"+s.Deployment]
	var owned []*appsv1.ReplicaSet
	if d != nil {
		owned = rollout.Owned(d, objs.ReplicaSets[s.Namespace])
	}
	// The same plan `run` makes: what the next run would do, and why.
	// The source is read once, for the plan and for what status says of it.
	src := deploy.SourceOf(cfg, s, objs.Deployments)
	in := deploy.Input{Service: s, Deployment: d, ReplicaSets: owned, Policy: pol, Now: now, Source: src}
	if s.Promote != nil {
		// The policy it owns under GitOps, as the run reads it.
		if ou := objs.Policies[s.Promote.PolicyNamespace+"/"+s.Promote.PolicyName]; ou != nil {
			in.Owned = &deploy.OwnedPolicy{Policy: flux.ParsePolicy(ou), Ours: gitops.OwnedBy(ou, s.Name)}
		}
	}
	dec := deploy.Plan(in)
	out.NextRun = &NextAction{Action: string(dec.Action), Target: dec.Target, Reason: dec.Reason, Held: dec.Held, OutsideWindow: dec.OutsideWindow}
	out.Promotion = promotion(s, src)
	out.Window = window(s, now)
	switch {
	case objs.FluxProblem != "":
		out.Problems = append(out.Problems, objs.FluxProblem)
	case dec.Problem:
		out.Problems = append(out.Problems, dec.Reason+"; "+dec.Fix)
	}
	// An exclusion a rollback added that is gone from the list (someone
	// edited it, or Flux applied the ImageRepository from git over it): the
	// policy may select the bad tag again.
	if rp := out.Repository; rp != nil && len(rp.ExclusionsLost) > 0 {
		ns, name, _ := strings.Cut(rp.Name, "/")
		out.Problems = append(out.Problems, fmt.Sprintf("the exclusion of %s that autodeploy's rollback added is no longer in ImageRepository %s's spec.exclusionList (edited, or applied from git over it): the policy may select it again; add it where the ImageRepository is kept (kubectl edit imagerepository %s -n %s, or git)",
			strings.Join(rp.ExclusionsLost, ", "), rp.Name, name, ns))
	}
	// A failing scan or a policy that cannot select is news: new images
	// stop arriving while everything else looks healthy.
	if rp := out.Repository; rp != nil && !rp.Ready && !rp.Suspended {
		ns, name, _ := strings.Cut(rp.Name, "/")
		out.Problems = append(out.Problems, fmt.Sprintf("ImageRepository %s is not Ready: %s (flux get image repository %s -n %s)", rp.Name, rp.Message, name, ns))
	}
	if pol != nil && !pol.Ready && pol.Latest != "" && !dec.Problem {
		out.Problems = append(out.Problems, fmt.Sprintf("ImagePolicy %s is not Ready: %s", policyKey, pol.Message))
	}
	if d == nil {
		out.State = StateMissing
		return out
	}
	if detail, fix := deploy.UnreadableMarksNote(d); detail != "" {
		out.Problems = append(out.Problems, detail+"; remove them: "+fix)
	}
	out.Container = dec.Container
	hold, held := deploy.ParseHold(d.Annotations)
	if held {
		out.Hold = &hold
	}
	var (
		repoRef    *flux.Ref
		exclusions []gitops.Exclusion
	)
	if pol != nil && out.Repository != nil {
		repoRef, exclusions = &flux.Ref{Namespace: pol.RepoNamespace, Name: pol.RepoName}, out.Repository.ExcludedByAutodeploy
	}
	out.Levers = gitops.Levers(s.Name, d, owned, held, hold.ReconcileDisabled, repoRef, exclusions, hold.Kustomization)
	if p := s.Promote; p != nil {
		ref := flux.Ref{Namespace: p.PolicyNamespace, Name: p.PolicyName}
		if l, ok := gitops.PromotionLever(s.Name, ref, objs.Policies[ref.String()]); ok {
			out.Levers = append(out.Levers, l)
		}
	}
	if f, ok := deploy.ParseFailedImage(d.Annotations); ok {
		// A failed image still running is a problem of the plan's
		// (deploy.runningFailed), whoever applied it.
		out.Failed = &f
	}
	if rt, ok := deploy.ParseRetry(d.Annotations); ok {
		out.Retry = &rt
	}
	out.Unverified = d.Annotations[deploy.AnnVerified] == "false"
	if m, ok := deploy.ParseSoak(d.Annotations); ok && m.Until.After(m.VerifiedAt) && image.SameString(m.Image, dec.Current) && d.Annotations[deploy.AnnVerified] == "true" {
		out.Soak = &m
	}

	st := rollout.Evaluate(d)
	ro := &Rollout{Image: dec.Current, Ready: d.Status.ReadyReplicas, Updated: d.Status.UpdatedReplicas,
		Available: d.Status.AvailableReplicas, State: string(st.State), Message: st.Message,
		Revision: rollout.Revision(d), ChangeCause: d.Annotations[rollout.ChangeCauseAnnotation], Desired: 1}
	if d.Spec.Replicas != nil {
		ro.Desired = *d.Spec.Replicas
	}
	cur := rollout.Current(d, owned)
	ro.RolledOutAt = rolledOutAt(d, cur)
	// Who else writes: the owner of the image field, and the Kustomization
	// that applies the Deployment from git.
	if dec.Container != "" {
		ro.ImageSetBy = rollout.ImageOwner(d, dec.Container)
	}
	ro.Kustomization = dec.Kustomization
	out.Rollout = ro
	if k := dec.Kustomization; k != "" {
		out.GitOps, out.Problems = gitOps(k, s, objs, out.Problems)
	}
	out.Pods = pods(owned, cur, objs.Pods[s.Namespace])

	out.State = StateHealthy
	switch st.State {
	case rollout.Progressing:
		out.State = StateProgressing
	case rollout.Failed:
		out.State = StateFailed
	case rollout.Paused:
		out.State = StatePaused
	}
	if out.State == StateHealthy && ro.Ready < ro.Desired {
		out.State = StateDegraded
	}
	for _, p := range out.Pods {
		if p.ReplicaSet == "current" && rollout.FatalReasons[p.Status] {
			out.State = StateFailed
		}
	}

	if pol != nil && pol.Latest != "" && dec.Current != "" {
		cur, errC := image.Parse(dec.Current)
		want, errW := image.Parse(pol.Latest)
		switch {
		case errC != nil || errW != nil:
			// An invalid reference is a problem of its own: unknown.
		case image.Satisfies(cur, want): // as run compares (deploy.Plan)
			out.Sync = SyncUpToDate
		case dec.Ahead:
			out.Sync = SyncAhead
		default:
			out.Sync = SyncBehind
		}
	}
	if pr := out.Promotion; pr != nil {
		out.Sync = promotedSync(*pr, dec.Current, out.Failed)
	}
	return out
}

// promotedSync is how a promoted service stands against its source, as
// Sync stands against a policy: behind while the source runs an image it
// could take (verified there, not remembered as failed here), up to date
// otherwise. Without it a promoted service was always "unknown", and
// status never exited 0 for a pipeline.
func promotedSync(p Promotion, current string, failed *deploy.FailedImage) string {
	switch {
	case p.SourceImage == "" || current == "":
		return SyncUnknown
	case image.SameString(current, p.SourceImage):
		return SyncUpToDate
	case p.SourceVerified != nil && (failed == nil || !image.SameString(failed.Image, p.SourceImage)):
		return SyncBehind
	}
	return SyncUpToDate
}

// rolledOutAt is when the current revision finished rolling out: the
// Progressing condition's update for NewReplicaSetAvailable, which a
// rollback moves too; else when its ReplicaSet was created.
func rolledOutAt(d *appsv1.Deployment, cur *appsv1.ReplicaSet) *time.Time {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "NewReplicaSetAvailable" {
			t := c.LastUpdateTime.UTC()
			return &t
		}
	}
	if cur == nil {
		return nil
	}
	t := cur.CreationTimestamp.UTC()
	return &t
}

// gitOps is who writes the Deployment from git and whether git follows the
// policy (issue: share the Deployment with Flux GitOps, never fight it).
func gitOps(k string, s config.Service, objs Objects, problems []string) (*GitOps, []string) {
	out := &GitOps{Kustomization: k}
	if objs.GitOpsProblem != "" {
		return out, append(problems, objs.GitOpsProblem)
	}
	policy, policyLabels := GitPolicy(s, objs)
	pns, pname := policy.Namespace, policy.Name
	g := flux.ResolveGitOps(flux.ParseRef(k), objs.Kustomizations[k], objs.Automations[pns], policy, policyLabels)
	if s.Promote != nil {
		pp := &PromotionPolicy{Name: pns + "/" + pname}
		if u := objs.Policies[pp.Name]; u != nil {
			p := flux.ParsePolicy(u)
			pp.Exists, pp.Autodeploy, pp.Latest, pp.Ready, pp.Message = true, gitops.OwnedBy(u, s.Name), p.Latest, p.Ready, p.Message
		}
		if a := g.Automation; a != nil {
			pp.InGit = a.ObservedPolicies[pname]
		}
		out.PromotionPolicy = pp
	}
	if g.Found {
		out.LastApplied, out.Suspended, out.Ready, out.Message = g.K.LastApplied, g.K.Suspended, g.K.Ready, g.K.Message
		out.Source = g.K.SourceKind + " " + g.K.Source.String()
	}
	if a := g.Automation; a != nil {
		out.Automation = &Automation{Name: a.Ref.String(), Ready: a.Ready, Suspended: a.Suspended, Message: a.Message, LastPushCommit: a.LastPushCommit, LastPushTime: a.LastPushTime}
	}
	if p := g.Problem(pns + "/" + pname); p != "" {
		problems = append(problems, p)
	}
	return out, problems
}

// GitPolicy is the ImagePolicy git's setter marker names for service s:
// its own, or the one autodeploy owns for a promoted service; with its
// labels, which the automation's policySelector must match: as read, or
// autodeploy's for an owned policy the first promotion has yet to create,
// nil for a policy of the service that was not found (not judged).
func GitPolicy(s config.Service, objs Objects) (flux.Ref, labels.Set) {
	if s.Promote == nil {
		ref := flux.Ref{Namespace: s.PolicyNamespace, Name: s.PolicyName}
		return ref, flux.PolicyLabels(objs.Policies[ref.String()])
	}
	ref := flux.Ref{Namespace: s.Promote.PolicyNamespace, Name: s.Promote.PolicyName}
	if u := objs.Policies[ref.String()]; u != nil {
		return ref, flux.PolicyLabels(u)
	}
	return ref, gitops.OwnedLabels()
}

func repository(u *unstructured.Unstructured) *Repository {
	r := &Repository{Name: u.GetNamespace() + "/" + u.GetName()}
	if ts, _, _ := unstructured.NestedString(u.Object, "status", "lastScanResult", "scanTime"); ts != "" {
		if t, err := time.Parse(time.RFC3339, ts); err == nil {
			r.LastScan = &t
		}
	}
	r.TagCount, _, _ = unstructured.NestedInt64(u.Object, "status", "lastScanResult", "tagCount")
	r.Suspended, _, _ = unstructured.NestedBool(u.Object, "spec", "suspend")
	r.Ready, r.Message = flux.Ready(u)
	r.ExcludedByAutodeploy = gitops.ParseExclusions(u)
	list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
	for _, e := range r.ExcludedByAutodeploy {
		if !slices.Contains(list, e.Pattern) {
			r.ExclusionsLost = append(r.ExclusionsLost, e.Tag)
		}
	}
	return r
}

// pods lists the pods of the current ReplicaSet and of the one before it:
// during a rollout, or after a failed one, those are the two that matter.
// Pods are matched to ReplicaSets by their controller reference, never by
// label alone.
func pods(owned []*appsv1.ReplicaSet, cur *appsv1.ReplicaSet, all []corev1.Pod) []Pod {
	roles := map[types.UID]string{}
	revs := map[types.UID]int64{}
	if cur != nil {
		roles[cur.UID], revs[cur.UID] = "current", rollout.Revision(cur)
		for _, rs := range owned { // newest revision first
			if rs != cur && rollout.Revision(rs) < rollout.Revision(cur) {
				roles[rs.UID], revs[rs.UID] = "previous", rollout.Revision(rs)
				break
			}
		}
	}
	var out []Pod
	for _, role := range []string{"current", "previous"} {
		for i := range all {
			p := &all[i]
			if ref := metav1.GetControllerOf(p); ref != nil && roles[ref.UID] == role {
				pd := pod(p, role)
				pd.Revision = revs[ref.UID]
				out = append(out, pd)
			}
		}
	}
	return out
}

func pod(p *corev1.Pod, role string) Pod {
	out := Pod{Name: p.Name, ReplicaSet: role, Status: string(p.Status.Phase), Created: p.CreationTimestamp.UTC(), Node: p.Spec.NodeName}
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		out.Restarts += cs.RestartCount
		if cs.Ready {
			ready++
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			out.Status = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "" && out.Status == string(p.Status.Phase):
			out.Status = cs.State.Terminated.Reason
		}
	}
	if p.DeletionTimestamp != nil {
		out.Status = "Terminating"
	}
	if out.Status == "" {
		out.Status = "Pending"
	}
	out.Ready = fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
	return out
}

// window describes s's deploy windows at now; nil when it has none.
func window(s config.Service, now time.Time) *Window {
	if len(s.DeployWindows) == 0 {
		return nil
	}
	v := config.CanStart(s.DeployWindows, now, s.RolloutTimeout+s.Soak)
	w := &Window{Open: v.Open}
	for _, dw := range s.DeployWindows {
		w.Windows = append(w.Windows, dw.String())
	}
	if v.Open {
		c := v.Closes.UTC()
		w.ClosesAt, w.Closes = &c, config.FormatWindowTime(v.Closes, now, v.Closing)
	}
	if !v.Next.IsZero() {
		n := v.Next.UTC()
		w.NextOpen, w.Next = &n, config.FormatWindowTime(v.Next, now, v.Window)
	}
	return w
}

// watchOf reads a watch lock's record; nil when it is none (no watch ran,
// or the last one released its lock on a clean stop).
func watchOf(h *lock.Holder, held bool, lockName string) *Watch {
	if h == nil {
		return nil
	}
	st, ok := watch.ParseRecord(h.Command)
	if !ok {
		return nil
	}
	return &Watch{Running: held, Holder: watch.Who(*h), Lock: lockName, State: st}
}
