package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// A fake cluster for (*Runner).Run: client-go's fake clientsets, plus a
// stand-in for the deployment controller, the scheduler and the kubelet of
// one Deployment (fakeCluster.rollOut). The fake clientset runs no
// controller: here, every patch that changes the Deployment's pod template
// makes that template's revision current at once, inside the patch
// request, and sets the pods and the Deployment's status to what the row
// says the image does (behaviour). The run's next read sees the outcome:
// no goroutine, no sleep.

var (
	fcDeployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	fcReplicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	fcPods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	fcPolicies    = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imagepolicies"}
	fcRepos       = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imagerepositories"}
	fcAutomations = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imageupdateautomations"}
)

// behaviour is what the cluster shows for the revision running an image.
// The zero value is a healthy image: its pod runs and is Ready, the
// rollout completes.
type behaviour struct {
	// pod sets the status of the revision's new pod (the old one keeps
	// running): the rollout does not complete.
	pod func(*corev1.Pod)
	// refused: the ReplicaSet cannot create its pod (a ResourceQuota, an
	// admission webhook): the Deployment's ReplicaFailure condition, with
	// this message, and no new pod.
	refused string
}

// fakeCluster is one Deployment (fcName in namespace "apps", revision 1
// running oldImage, healthy), its ImagePolicy selecting a newer image, and
// optionally the ImageRepository and Kustomization labels of GitOps.
type fakeCluster struct {
	t    *testing.T
	kube *kubefake.Clientset
	dyn  *dynamicfake.FakeDynamicClient

	// cmu serialises the controller (converge): a rollback's patch and a
	// reactor on another fake settling the cluster at the same time listed
	// and deleted the same pod (CI: "pods ... not found").
	cmu sync.Mutex
	mu  sync.Mutex
	// behave: by image; absent is healthy.
	behave map[string]behaviour
	// applied lists the image of every patch that changed the template, in
	// order: the deploy, the rollback.
	applied []string
	// afterRollOut, when set, runs after the controller made a template
	// current (with the image it runs): a person acting mid-rollout.
	afterRollOut func(c *fakeCluster, img string)
	// health, when set, is the run's health check (a row's that needs the
	// cluster).
	health func(ctx context.Context, h config.Health, image, tag string) error
	// elapsed is how far the run's clock stands past fcNow: a reactor
	// moves it (time passing while the run waits), the run reads it.
	elapsed atomic.Int64
}

// now is the run's clock: fcNow plus what the rows let elapse.
func (c *fakeCluster) now() time.Time { return fcNow.Add(time.Duration(c.elapsed.Load())) }

const fcName = "api-gateway" // svc()'s Deployment, in namespace "apps"

// newFakeCluster starts from revision 1 running running (complete), and a
// policy selecting latest. gitops: the Deployment is applied by
// Kustomization flux-system/apps (labels, managedFields) and the policy's
// ImageRepository exists.
func newFakeCluster(t *testing.T, running, latest string, gitops bool) *fakeCluster {
	t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fcName, Namespace: "apps", UID: types.UID("dep-uid"), Generation: 1,
			Annotations: map[string]string{rollout.RevisionAnnotation: "1"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fcName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": fcName}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: fcName, Image: running}}},
			},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1},
	}
	if gitops {
		appliedByFlux(d)
		managedBy(flux.KustomizeManager)(d)
	}
	rs1 := fcReplicaSet(d, 1)
	pod1 := fcPod(d, rs1, nil)
	kube := kubefake.NewSimpleClientset(d, rs1, pod1)
	// What flux.Detect asks discovery for: Flux 2.7's image API.
	kube.Resources = []*metav1.APIResourceList{{GroupVersion: flux.ImageGroup + "/v1"}}

	objs := []runtime.Object{fcPolicy(latest)}
	if gitops {
		objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": flux.ImageGroup + "/v1", "kind": "ImageRepository",
			"metadata": map[string]any{"name": fcName, "namespace": "flux-system"},
			"spec":     map[string]any{"image": repo, "interval": "5m"},
		}})
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		fcPolicies: "ImagePolicyList", fcRepos: "ImageRepositoryList", fcAutomations: "ImageUpdateAutomationList",
		flux.GitRepositoryGVR: "GitRepositoryList", flux.KustomizationGVR: "KustomizationList",
	}, objs...)
	c := &fakeCluster{t: t, kube: kube, dyn: dyn, behave: map[string]behaviour{}}
	kube.PrependReactor("patch", "deployments", c.onPatch)
	return c
}

// fcPolicy is a Ready ImagePolicy (image.toolkit.fluxcd.io/v1, as
// fluxsim writes it) over the ImageRepository of the same name, selecting
// latest.
func fcPolicy(latest string) *unstructured.Unstructured {
	i := len(latest) - 1
	for i > 0 && latest[i] != ':' {
		i--
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": flux.ImageGroup + "/v1", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": fcName, "namespace": "flux-system"},
		"spec": map[string]any{
			"imageRepositoryRef": map[string]any{"name": fcName},
			"policy":             map[string]any{"alphabetical": map[string]any{"order": "asc"}},
		},
		"status": map[string]any{
			"latestRef":  map[string]any{"name": latest[:i], "tag": latest[i+1:]},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "Latest image tag for " + latest + " resolved"}},
		},
	}}
}

func fcReplicaSet(d *appsv1.Deployment, rev int64) *appsv1.ReplicaSet {
	hash := fmt.Sprintf("h%d", rev)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace,
			Labels:          map[string]string{"app": fcName, appsv1.DefaultDeploymentUniqueLabelKey: hash},
			Annotations:     map[string]string{rollout.RevisionAnnotation: itoa(rev)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(1)), Template: *d.Spec.Template.DeepCopy()},
	}
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	return rs
}

// fcPod is the pod of rs; status nil: running and Ready.
func fcPod(d *appsv1.Deployment, rs *appsv1.ReplicaSet, status func(*corev1.Pod)) *corev1.Pod {
	hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-1", Namespace: d.Namespace, UID: types.UID("pod-" + hash),
			Labels: map[string]string{"app": fcName, appsv1.DefaultDeploymentUniqueLabelKey: hash}},
		Spec: *rs.Spec.Template.Spec.DeepCopy(),
	}
	if status == nil {
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: fcName, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	} else {
		status(p)
	}
	return p
}

// onPatch applies a patch of the Deployment as the API server does, then,
// when it changed the pod template, plays the controller (rollOut). The
// fake holds its lock during reactors: only the tracker is used here.
func (c *fakeCluster) onPatch(action k8stesting.Action) (bool, runtime.Object, error) {
	tr := c.kube.Tracker()
	before, err := tr.Get(fcDeployments, action.GetNamespace(), fcName)
	if err != nil {
		return true, nil, err
	}
	_, obj, err := k8stesting.ObjectReaction(tr)(action)
	if err != nil {
		return true, nil, err
	}
	d := obj.(*appsv1.Deployment)
	if !rollout.EqualIgnoreHash(&before.(*appsv1.Deployment).Spec.Template, &d.Spec.Template) {
		c.rollOut(d.DeepCopy())
	}
	return true, obj, nil
}

// rollOut makes d's template the current revision, as the deployment
// controller does: a new ReplicaSet, or the one with that template again (a
// rollback) with the next revision number; then the pods and the status
// the image's behaviour says.
func (c *fakeCluster) rollOut(d *appsv1.Deployment) { c.converge(d, true) }

// settle makes the current revision, running img, show b now (the kubelet
// got on with it), without a patch: not counted in appliedImages.
func (c *fakeCluster) settle(img string, b behaviour) {
	c.mu.Lock()
	c.behave[img] = b
	c.mu.Unlock()
	c.converge(c.deployment(), false)
}

func (c *fakeCluster) converge(d *appsv1.Deployment, patched bool) {
	c.t.Helper()
	c.cmu.Lock()
	img, after := c.converged(d, patched)
	c.cmu.Unlock()
	if after != nil && patched {
		after(c, img)
	}
}

// converged is converge's controller step, under cmu; it returns the
// image made current and afterRollOut, to be called without cmu.
func (c *fakeCluster) converged(d *appsv1.Deployment, patched bool) (string, func(*fakeCluster, string)) {
	c.t.Helper()
	tr := c.kube.Tracker()
	list, err := tr.List(fcReplicaSets, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), d.Namespace)
	c.must(err)
	owned := rollout.Owned(d, list.(*appsv1.ReplicaSetList).Items)
	var top int64
	for _, rs := range owned {
		top = max(top, rollout.Revision(rs))
	}
	cur := rollout.Current(d, owned)
	switch {
	case cur == nil:
		cur = fcReplicaSet(d, top+1)
		c.must(tr.Create(fcReplicaSets, cur, d.Namespace))
	case rollout.Revision(cur) < top:
		cur = cur.DeepCopy()
		cur.Annotations[rollout.RevisionHistoryAnnotation] = itoa(rollout.Revision(cur))
		cur.Annotations[rollout.RevisionAnnotation] = itoa(top + 1)
		c.must(tr.Update(fcReplicaSets, cur, d.Namespace))
	}
	img, _ := rollout.ContainerImage(&d.Spec.Template, fcName)
	c.mu.Lock()
	if patched {
		c.applied = append(c.applied, img)
	}
	b := c.behave[img]
	after := c.afterRollOut
	c.mu.Unlock()

	d.Annotations[rollout.RevisionAnnotation] = cur.Annotations[rollout.RevisionAnnotation]
	d.Generation++
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation}
	hash := cur.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	pods, err := tr.List(fcPods, corev1.SchemeGroupVersion.WithKind("Pod"), d.Namespace)
	c.must(err)
	switch {
	case b.refused != "":
		// maxSurge 1 on a full quota: the old pod stays, no new one.
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: b.refused}}
	case b.pod != nil:
		p := fcPod(d, cur, b.pod)
		if _, err := tr.Get(fcPods, d.Namespace, p.Name); err == nil {
			c.must(tr.Update(fcPods, p, d.Namespace)) // a rollback to a revision whose pod is still there
		} else {
			c.must(tr.Create(fcPods, p, d.Namespace))
		}
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 1, 1, 1
	default:
		// Healthy: the revision's pod runs, every other one is gone.
		found := false
		for _, p := range pods.(*corev1.PodList).Items {
			if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
				found = true
				p.Status = fcPod(d, cur, nil).Status
				c.must(tr.Update(fcPods, &p, d.Namespace))
				continue
			}
			c.must(tr.Delete(fcPods, d.Namespace, p.Name))
		}
		if !found {
			c.must(tr.Create(fcPods, fcPod(d, cur, nil), d.Namespace))
		}
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1, 1
	}
	c.must(tr.Update(fcDeployments, d, d.Namespace))
	return img, after
}

func (c *fakeCluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("fake cluster: %v", err)
	}
}

// deployment is the Deployment as stored now (nil once deleted).
func (c *fakeCluster) deployment() *appsv1.Deployment {
	obj, err := c.kube.Tracker().Get(fcDeployments, "apps", fcName)
	if err != nil {
		return nil
	}
	return obj.(*appsv1.Deployment)
}

// exclusionList is the ImageRepository's spec.exclusionList.
func (c *fakeCluster) exclusionList() []string {
	u, err := c.dyn.Resource(fcRepos).Namespace("flux-system").Get(c.t.Context(), fcName, metav1.GetOptions{})
	c.must(err)
	list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
	return list
}

// appliedImages is what the patches rolled out, in order.
func (c *fakeCluster) appliedImages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.applied...)
}

// seed rolls img out as someone other than autodeploy would (Flux applying
// git, a person), with the cluster showing b for it, and sets ann on the
// Deployment; the rollout is not counted in appliedImages.
func (c *fakeCluster) seed(img string, b behaviour, ann map[string]string) {
	c.t.Helper()
	d := c.deployment()
	d.Spec.Template.Spec.Containers[0].Image = img
	for k, v := range ann {
		d.Annotations[k] = v
	}
	c.mu.Lock()
	c.behave[img] = b
	c.mu.Unlock()
	c.rollOut(d)
	c.mu.Lock()
	c.applied = nil
	c.mu.Unlock()
}

// event adds the kubelet's "Failed" event of a pod, as `kubectl describe
// pod` shows why its pull failed.
func (c *fakeCluster) event(pod, msg string) {
	c.t.Helper()
	e := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: pod + ".1", Namespace: "apps"}, Reason: "Failed", Message: msg, Type: corev1.EventTypeWarning,
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "apps", Name: pod}}
	c.must(c.kube.Tracker().Add(e))
}

// gitOpsSources adds what brings git along reads: Kustomization
// flux-system/apps from GitRepository flux-system/flux-system, and the
// ImageUpdateAutomation pushing to it, whose last run wrote observed for
// the policy. The fake source-controller answers every reconcile request
// of the GitRepository at once (status.lastHandledReconcileAt).
func (c *fakeCluster) gitOpsSources(observed string) {
	c.t.Helper()
	ready := []any{map[string]any{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok"}}
	src := map[string]any{"kind": "GitRepository", "name": "flux-system"}
	for _, o := range []*unstructured.Unstructured{
		{Object: map[string]any{"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
			"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
			"spec":     map[string]any{"sourceRef": src, "path": "./apps", "interval": "1m"},
			"status":   map[string]any{"conditions": ready}}},
		{Object: map[string]any{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
			"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
			"spec":     map[string]any{"url": "http://git.local/fleet", "interval": "1m"},
			"status":   map[string]any{"conditions": ready}}},
		{Object: map[string]any{"apiVersion": flux.ImageGroup + "/v1", "kind": "ImageUpdateAutomation",
			"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
			"spec":     map[string]any{"sourceRef": src, "interval": "1m", "update": map[string]any{"path": "./apps", "strategy": "Setters"}},
			"status":   map[string]any{"conditions": ready, "observedPolicies": map[string]any{fcName: map[string]any{"name": repo, "tag": observed}}}}},
	} {
		c.must(c.dyn.Tracker().Add(o))
	}
	c.dyn.PrependReactor("patch", "gitrepositories", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var p struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(a.(k8stesting.PatchAction).GetPatch(), &p); err != nil {
			return true, nil, err
		}
		obj, err := c.dyn.Tracker().Get(flux.GitRepositoryGVR, "flux-system", "flux-system")
		if err != nil {
			return true, nil, err
		}
		u := obj.(*unstructured.Unstructured)
		token := p.Metadata.Annotations[flux.ReconcileAnnotation]
		u.SetAnnotations(map[string]string{flux.ReconcileAnnotation: token})
		c.must(unstructured.SetNestedField(u.Object, token, "status", "lastHandledReconcileAt"))
		c.must(c.dyn.Tracker().Update(flux.GitRepositoryGVR, u, "flux-system"))
		return true, u, nil
	})
}

// automationWrites is the ImageUpdateAutomation committing tag to git.
func (c *fakeCluster) automationWrites(tag string) {
	c.t.Helper()
	obj, err := c.dyn.Tracker().Get(fcAutomations, "flux-system", "flux-system")
	c.must(err)
	u := obj.(*unstructured.Unstructured)
	c.must(unstructured.SetNestedField(u.Object, map[string]any{fcName: map[string]any{"name": repo, "tag": tag}}, "status", "observedPolicies"))
	c.must(c.dyn.Tracker().Update(fcAutomations, u, "flux-system"))
}

// fetchAsked is the reconcile request the run made of the GitRepository,
// "" when none.
func (c *fakeCluster) fetchAsked() string {
	obj, err := c.dyn.Tracker().Get(flux.GitRepositoryGVR, "flux-system", "flux-system")
	c.must(err)
	return obj.(*unstructured.Unstructured).GetAnnotations()[flux.ReconcileAnnotation]
}
