package status

import (
	"context"
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
)

// Collect reads what Build needs with one LIST per namespace and kind
// (Deployments, ReplicaSets, Pods; ImagePolicies, ImageRepositories,
// ImageUpdateAutomations) and one discovery request, never a GET per
// service or pod: only each Kustomization that applies a service is read
// on its own (most setups have one). It needs read access only and takes
// no lock.
func Collect(ctx context.Context, kc kubernetes.Interface, dc dynamic.Interface, services []config.Service) (Objects, error) {
	objs := Objects{
		Deployments: map[string]*appsv1.Deployment{}, ReplicaSets: map[string][]appsv1.ReplicaSet{}, Pods: map[string][]corev1.Pod{},
		Policies: map[string]*unstructured.Unstructured{}, Repositories: map[string]*unstructured.Unstructured{},
	}
	for _, ns := range config.DeploymentNamespaces(services) {
		dl, err := kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return objs, fmt.Errorf("list Deployments in %s: %w", ns, err)
		}
		for i := range dl.Items {
			objs.Deployments[ns+"/"+dl.Items[i].Name] = &dl.Items[i]
		}
		rl, err := kc.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return objs, fmt.Errorf("list ReplicaSets in %s: %w", ns, err)
		}
		objs.ReplicaSets[ns] = rl.Items
		pl, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return objs, fmt.Errorf("list Pods in %s: %w", ns, err)
		}
		objs.Pods[ns] = pl.Items
	}
	api, err := flux.Detect(ctx, kc.Discovery())
	if errors.Is(err, flux.ErrNotInstalled) {
		// Still worth showing the Deployments.
		objs.FluxProblem = err.Error()
		return objs, nil
	}
	if err != nil {
		return objs, err
	}
	objs.FluxAPI = api.Version
	var repoNS []string
	for _, ns := range config.PolicyNamespaces(services) {
		l, err := dc.Resource(api.Policies()).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return objs, fmt.Errorf("list ImagePolicies in %s: %w", ns, err)
		}
		for i := range l.Items {
			u := &l.Items[i]
			objs.Policies[ns+"/"+u.GetName()] = u
			if p := flux.ParsePolicy(u); !slices.Contains(repoNS, p.RepoNamespace) {
				repoNS = append(repoNS, p.RepoNamespace)
			}
		}
	}
	collectGitOps(ctx, dc, api, services, &objs)
	for _, ns := range repoNS {
		l, err := dc.Resource(api.Repositories()).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return objs, fmt.Errorf("list ImageRepositories in %s: %w", ns, err)
		}
		for i := range l.Items {
			objs.Repositories[ns+"/"+l.Items[i].GetName()] = &l.Items[i]
		}
	}
	return objs, nil
}

// collectGitOps reads the Kustomizations the configured Deployments' labels
// name, and the ImageUpdateAutomations of the policy namespaces of those
// services: nothing when no service is applied from git. A read that
// fails is a problem status shows, not the end of status.
func collectGitOps(ctx context.Context, dc dynamic.Interface, api flux.API, services []config.Service, objs *Objects) {
	objs.Kustomizations = map[string]*unstructured.Unstructured{}
	objs.Automations = map[string][]unstructured.Unstructured{}
	var autoNS []string
	for _, s := range services {
		d := objs.Deployments[s.Namespace+"/"+s.Deployment]
		if d == nil {
			continue
		}
		k := gitops.KustomizationOf(d)
		if k == "" {
			continue
		}
		// The automation that writes git's setter: in the namespace of the
		// service's policy, or of the one autodeploy owns for a promotion.
		pns := s.PolicyNamespace
		if s.Promote != nil {
			pns = s.Promote.PolicyNamespace
		}
		if !slices.Contains(autoNS, pns) {
			autoNS = append(autoNS, pns)
		}
		if _, done := objs.Kustomizations[k]; done {
			continue
		}
		kref := flux.ParseRef(k)
		u, err := dc.Resource(flux.KustomizationGVR).Namespace(kref.Namespace).Get(ctx, kref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			objs.Kustomizations[k] = nil
		case err != nil:
			objs.GitOpsProblem = fmt.Sprintf("cannot read Flux Kustomization %s: %v", k, err)
			return
		default:
			objs.Kustomizations[k] = u
		}
	}
	for _, ns := range autoNS {
		l, err := dc.Resource(api.Automations()).Namespace(ns).List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Flux without image-automation-controller: no automation.
		case err != nil:
			objs.GitOpsProblem = fmt.Sprintf("cannot list ImageUpdateAutomations in %s: %v", ns, err)
			return
		default:
			objs.Automations[ns] = l.Items
		}
	}
}
