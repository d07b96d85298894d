package status

import (
	"context"
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// Collect reads what Build needs with one LIST per namespace and kind
// (Deployments, ReplicaSets, Pods; ImagePolicies, ImageRepositories) and
// one discovery request, never a GET per service or pod. It needs read
// access only and takes no lock.
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
