// Package access is the single list of what autodeploy asks of the
// Kubernetes API, command by command. `manifests rbac` turns it into a
// least-privilege Role per namespace, and `doctor` checks it with
// SelfSubjectAccessReviews; an integration test proves every rule is used.
package access

import (
	"slices"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Scope says in which namespaces a rule applies.
type Scope int

const (
	// ServiceNamespaces are the namespaces of the configured Deployments.
	ServiceNamespaces Scope = iota
	// PolicyNamespaces are those of the configured ImagePolicies and, in the
	// usual layout, of their ImageRepositories.
	PolicyNamespaces
	// FluxNamespace is flux.namespace, where Kustomizations usually live.
	FluxNamespace
	// LeaseNamespace is lock.leaseNamespace (lock.type: lease).
	LeaseNamespace
)

// Rule is one (group, resource, verb) autodeploy uses, and why.
type Rule struct {
	Group, Resource, Verb string
	Scope                 Scope
	// Commands that need it; ReadOnly rules are all `status` needs.
	Commands []string
	ReadOnly bool
	// Why, for the comment in the generated Role.
	Why string
}

// Rules is every API permission autodeploy uses. Discovery (/apis) and
// SelfSubjectAccessReview need none: Kubernetes grants both to every
// authenticated user (system:discovery, system:basic-user).
var Rules = []Rule{
	{"apps", "deployments", "get", ServiceNamespaces, []string{"run", "watch", "rollback", "hold", "resume", "forget", "history"}, true, "read one Deployment: wait for a rollout, rollback, hold/resume, forget, history"},
	{"apps", "deployments", "list", ServiceNamespaces, []string{"run", "watch", "status"}, true, "plan: one LIST per namespace"},
	{"apps", "deployments", "watch", ServiceNamespaces, []string{"run", "watch", "rollback"}, false, "wait for a rollout as kubectl rollout status does"},
	{"apps", "deployments", "patch", ServiceNamespaces, []string{"run", "watch", "rollback", "hold", "resume", "forget"}, false, "set the image, roll back, keep autodeploy's annotations (and remove them: forget)"},
	{"apps", "replicasets", "patch", ServiceNamespaces, []string{"rollback", "hold", "resume", "forget"}, false, "put the hold and failed marks on the ReplicaSets too, so that kubectl rollout undo keeps them (and remove them there: resume, forget)"},
	{"apps", "replicasets", "list", ServiceNamespaces, []string{"run", "watch", "status", "rollback", "resume", "forget", "history"}, true, "revisions: history, rollback target, downgrade check; the ReplicaSets that carry autodeploy's marks"},
	{"", "pods", "list", ServiceNamespaces, []string{"run", "watch", "rollback", "status"}, true, "fail fast on ImagePullBackOff/CrashLoopBackOff; status shows pods"},
	{"", "pods", "watch", ServiceNamespaces, []string{"run", "watch", "rollback"}, false, "fail fast on ImagePullBackOff/CrashLoopBackOff during a rollout"},
	{"", "events", "list", ServiceNamespaces, []string{"run", "watch"}, true, "why a pull failed (the kubelet's Failed event) when ImagePullBackOff alone does not say: image or registry"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "list", PolicyNamespaces, []string{"run", "watch", "status"}, true, "read the latest image Flux selected"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "get", PolicyNamespaces, []string{"run", "watch", "rollback", "resume", "forget"}, true, "read a policy again right before deploying its service; find its ImageRepository for a rollback under Flux GitOps, and the exclusions to forget"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "watch", PolicyNamespaces, []string{"run", "watch", "rollback"}, false, "wait for Flux's answer to the rescan request (Flux >= 2.7); the watch's informers"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "patch", PolicyNamespaces, []string{"run", "watch", "promote", "rollback"}, false, "ask Flux to re-evaluate now (reconcile.fluxcd.io/requestedAt, Flux >= 2.7); point the ImagePolicy autodeploy owns for a promoted service applied from git at the promoted tag, and back after a rollback"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "create", PolicyNamespaces, []string{"run", "watch", "promote"}, false, "create the ImagePolicy autodeploy owns for a promoted service applied from git (promote.imagePolicy) at its first promotion, so that the automation writes the promoted tag to git"},
	{"image.toolkit.fluxcd.io", "imagepolicies", "delete", PolicyNamespaces, []string{"forget"}, false, "delete the ImagePolicy autodeploy created for a promotion, by its record"},
	{"image.toolkit.fluxcd.io", "imagerepositories", "list", PolicyNamespaces, []string{"run", "watch", "status", "rollback"}, true, "last scan, tag count; which repositories to rescan"},
	{"image.toolkit.fluxcd.io", "imagerepositories", "watch", PolicyNamespaces, []string{"run", "watch", "rollback"}, false, "wait for Flux's answer to the rescan request"},
	{"image.toolkit.fluxcd.io", "imagerepositories", "patch", PolicyNamespaces, []string{"run", "watch", "rollback", "resume", "forget"}, false, "ask Flux to rescan now (reconcile.fluxcd.io/requestedAt); exclude a rolled-back tag (spec.exclusionList) so that git follows the rollback, and remove that exclusion later"},
	{"image.toolkit.fluxcd.io", "imagerepositories", "get", PolicyNamespaces, []string{"run", "watch", "rollback", "resume", "forget"}, false, "read the exclusionList right before changing it (a conditional write)"},
	{"image.toolkit.fluxcd.io", "imageupdateautomations", "list", PolicyNamespaces, []string{"run", "watch", "status", "doctor", "rollback"}, true, "does an ImageUpdateAutomation write the policy's tag to git (Flux GitOps)"},
	{"image.toolkit.fluxcd.io", "imageupdateautomations", "watch", PolicyNamespaces, []string{"run", "watch", "rollback"}, false, "after a deploy under Flux GitOps, wait for the automation to write the tag to git"},
	{"kustomize.toolkit.fluxcd.io", "kustomizations", "get", FluxNamespace, []string{"run", "watch", "status", "doctor", "rollback"}, true, "the Kustomization that applies a Deployment from git: its source, its last applied revision"},
	{"source.toolkit.fluxcd.io", "gitrepositories", "list", FluxNamespace, []string{"run", "watch", "rollback"}, false, "after a deploy under Flux GitOps, ask the GitRepository to fetch the automation's commit now (reconcile.fluxcd.io/requestedAt)"},
	{"source.toolkit.fluxcd.io", "gitrepositories", "patch", FluxNamespace, []string{"run", "watch", "rollback"}, false, "after a deploy under Flux GitOps, ask the GitRepository to fetch the automation's commit now (reconcile.fluxcd.io/requestedAt)"},
	{"source.toolkit.fluxcd.io", "gitrepositories", "watch", FluxNamespace, []string{"run", "watch", "rollback"}, false, "wait for source-controller's answer to that request"},
	{"kustomize.toolkit.fluxcd.io", "kustomizations", "patch", FluxNamespace, []string{"resume", "forget"}, false, "resume a Kustomization suspended by the rollback --suspend-flux of an earlier version"},
	{"notification.toolkit.fluxcd.io", "receivers", "list", FluxNamespace, []string{"watch", "doctor"}, false, "does a Flux Receiver turn the registry's webhook into a rescan of every configured ImageRepository (doctor; the watch warns at its start)"},
	{"coordination.k8s.io", "leases", "get", LeaseNamespace, []string{"run", "watch", "rollback", "forget", "status", "hold"}, true, "cluster-wide lock (lock.type: lease); status and hold say which run holds it"},
	{"coordination.k8s.io", "leases", "create", LeaseNamespace, []string{"run", "watch", "rollback", "forget"}, false, "cluster-wide lock (lock.type: lease)"},
	{"coordination.k8s.io", "leases", "update", LeaseNamespace, []string{"run", "watch", "rollback", "forget"}, false, "cluster-wide lock (lock.type: lease)"},
}

// Namespaces returns, for each scope, the namespaces cfg puts in it.
func Namespaces(cfg *config.Config) map[Scope][]string {
	out := map[Scope][]string{}
	add := func(s Scope, ns string) {
		if ns != "" && !slices.Contains(out[s], ns) {
			out[s] = append(out[s], ns)
		}
	}
	for _, ns := range config.DeploymentNamespaces(cfg.Services) {
		add(ServiceNamespaces, ns)
	}
	for _, ns := range config.PolicyNamespaces(cfg.Services) {
		add(PolicyNamespaces, ns)
	}
	add(FluxNamespace, cfg.Flux.Namespace)
	if cfg.Lock.Type == config.LockLease {
		add(LeaseNamespace, cfg.Lock.LeaseNamespace)
	}
	return out
}

// Check is one permission to hold in one namespace.
type Check struct {
	Rule      Rule
	Namespace string
}

// Checks lists every (rule, namespace) cfg needs; readOnly keeps what
// `status` needs.
func Checks(cfg *config.Config, readOnly bool) []Check {
	nss := Namespaces(cfg)
	var out []Check
	for _, r := range Rules {
		if readOnly && !r.ReadOnly {
			continue
		}
		for _, ns := range nss[r.Scope] {
			out = append(out, Check{Rule: r, Namespace: ns})
		}
	}
	return out
}
