package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The objects of one Deployment mid-rollout: revision 2 (image v2) is the
// new ReplicaSet, its pod is listed with the pod-template-hash "new".
func rolloutObjects(complete bool) (*appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Pod) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "apps", UID: "dep-uid", Generation: 2,
			Annotations: map[string]string{RevisionAnnotation: "2"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "ghcr.io/x/api:v2"}}},
			},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1},
	}
	if complete {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, ReadyReplicas: 1}
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "api-new", Namespace: "apps", Labels: map[string]string{"app": "api", appsv1.DefaultDeploymentUniqueLabelKey: "new"},
			Annotations:     map[string]string{RevisionAnnotation: "2"},
			OwnerReferences: []metav1.OwnerReference{{UID: "dep-uid", Controller: ptr(true), Kind: "Deployment", Name: "api"}}},
		Spec: appsv1.ReplicaSetSpec{Template: *d.Spec.Template.DeepCopy()},
	}
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "new"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-new-1", Namespace: "apps", UID: "pod-uid",
		Labels: map[string]string{"app": "api", appsv1.DefaultDeploymentUniqueLabelKey: "new"}}}
	return d, rs, pod
}

func waiting(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "api", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
	}
}

var (
	deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	podsGVR        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// TestWait drives Wait through what a rollout can meet, the way kubectl's
// status viewer tests are written: objects in, verdict out. Later changes
// happen from a reactor on the pod watch, i.e. once the waiter has listed
// and is watching, never after a sleep.
func TestWait(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("the server is restarting")
	tests := []struct {
		name     string
		complete bool
		// unobserved: the controller has not seen the spec yet.
		unobserved bool
		pod        func(*corev1.Pod)
		events     []corev1.Event
		// reactors are added to the clientset before Wait starts.
		reactors func(*fake.Clientset)
		// then changes the cluster once the waiter watches.
		then    func(*fake.Clientset)
		timeout time.Duration
		check   func(*testing.T, error)
	}{
		{name: "complete", complete: true, check: wantNil},
		{name: "completes while watched", then: func(c *fake.Clientset) {
			d, _, _ := rolloutObjects(true)
			update(c, deploymentsGVR, d)
		}, check: wantNil},
		{name: "failed GETs are retried", complete: true, reactors: func(c *fake.Clientset) {
			n := 0
			c.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
				if n++; n <= 2 {
					return true, nil, unavailable
				}
				return false, nil, nil
			})
		}, check: wantNil},
		{name: "a broken watch is watched again", reactors: func(c *fake.Clientset) {
			n := 0
			c.PrependWatchReactor("deployments", func(k8stesting.Action) (bool, watch.Interface, error) {
				if n++; n == 1 {
					w := watch.NewFake()
					w.Stop() // the API server closed it
					return true, w, nil
				}
				if n == 2 {
					return true, nil, unavailable
				}
				// Third watch: the rollout has completed meanwhile.
				d, _, _ := rolloutObjects(true)
				update(c, deploymentsGVR, d)
				return false, nil, nil
			})
		}, check: wantNil},
		{name: "an API down until the deadline is no verdict", timeout: 300 * time.Millisecond, reactors: func(c *fake.Clientset) {
			c.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, unavailable })
		}, check: func(t *testing.T, err error) {
			var ue *UnobservedError
			if !errors.As(err, &ue) || !apierrors.IsServiceUnavailable(err) {
				t.Fatalf("Wait = %v, want an UnobservedError with the last API error", err)
			}
		}},
		{name: "a deleted Deployment ends the wait", then: func(c *fake.Clientset) {
			if err := c.Tracker().Delete(deploymentsGVR, "apps", "api"); err != nil {
				panic(err)
			}
		}, check: func(t *testing.T, err error) {
			if !errors.Is(err, ErrDeleted) || !strings.Contains(err.Error(), "deployment apps/api was deleted during the rollout") {
				t.Fatalf("Wait = %v, want ErrDeleted", err)
			}
		}},
		{name: "RBAC refusal ends the wait", reactors: func(c *fake.Clientset) {
			c.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(podsGVR.GroupResource(), "", errors.New("no"))
			})
		}, check: func(t *testing.T, err error) {
			if !apierrors.IsForbidden(err) {
				t.Fatalf("Wait = %v, want Forbidden", err)
			}
		}},
		{name: "template changed by someone else", then: func(c *fake.Clientset) {
			d, _, _ := rolloutObjects(false)
			d.Spec.Template.Spec.Containers[0].Image = "ghcr.io/x/api:hotfix"
			d.ManagedFields = []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: "Update", FieldsV1: fieldsV1(`{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}}}`)},
				{Manager: "kubectl-set", Operation: "Update", FieldsV1: fieldsV1(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:image":{}}}}}}}`)},
				{Manager: "kube-controller-manager", Operation: "Update", Subresource: "status", FieldsV1: fieldsV1(`{"f:status":{}}`)},
			}
			update(c, deploymentsGVR, d)
		}, check: func(t *testing.T, err error) {
			var se *SupersededError
			if !errors.As(err, &se) || se.By != "kubectl-set" || se.Image != "ghcr.io/x/api:hotfix" {
				t.Fatalf("Wait = %#v, want SupersededError by kubectl-set to the hotfix", err)
			}
		}},
		{name: "ImagePullBackOff, image not found", pod: waiting("ImagePullBackOff", "Back-off pulling image"),
			events: []corev1.Event{pullFailed("api-new-1", `Failed to pull image "ghcr.io/x/api:v2": rpc error: code = NotFound desc = failed to resolve reference: ghcr.io/x/api:v2: not found`)},
			check:  wantFailed(CauseImage, "not found")},
		{name: "ImagePullBackOff after a 503 is the registry's", pod: waiting("ErrImagePull", `failed to pull and unpack image "ghcr.io/x/api:sha-4031a2b": unexpected status from HEAD request: 503 Service Unavailable`),
			then: func(c *fake.Clientset) {
				_, _, p := rolloutObjects(false)
				waiting("ImagePullBackOff", `Back-off pulling image "ghcr.io/x/api:sha-4031a2b"`)(p)
				update(c, podsGVR, p)
			}, check: wantFailed(CauseRegistry, "503 Service Unavailable")},
		{name: "a first ErrImagePull is forgiven", pod: waiting("ErrImagePull", "429 Too Many Requests"),
			then: func(c *fake.Clientset) {
				_, _, p := rolloutObjects(false)
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "api", Ready: true}}
				update(c, podsGVR, p)
				d, _, _ := rolloutObjects(true)
				update(c, deploymentsGVR, d)
			}, check: wantNil},
		{name: "CreateContainerConfigError counts after its grace", pod: waiting("CreateContainerConfigError", `secret "api-env" not found`),
			check: wantFailed(CauseConfig, `secret "api-env" not found`)},
		{name: "a pod stuck before the new ReplicaSet was known", pod: waiting("ImagePullBackOff", "Back-off pulling image"),
			unobserved: true,
			events:     []corev1.Event{pullFailed("api-new-1", "manifest unknown")},
			then: func(c *fake.Clientset) {
				d, _, _ := rolloutObjects(false)
				update(c, deploymentsGVR, d) // the controller observes the spec; the pod sends nothing more
			}, check: wantFailed(CauseImage, "manifest unknown")},
		{name: "CrashLoopBackOff counts at once", pod: waiting("CrashLoopBackOff", "back-off 10s restarting failed container"),
			check: wantFailed(CauseImage, "CrashLoopBackOff")},
		{name: "progress deadline", then: func(c *fake.Clientset) {
			d, _, _ := rolloutObjects(false)
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: TimedOutReason}}
			update(c, deploymentsGVR, d)
		}, check: wantFailed(CauseUnknown, "exceeded its progress deadline")},
		// Issue 17, item 1: faults of the cluster are not the image's.
		{name: "a quota refusing the new pods is the cluster's", pod: gone, then: func(c *fake.Clientset) {
			d, _, _ := rolloutObjects(false)
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
				Message: `pods "api-new-2" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3`}}
			update(c, deploymentsGVR, d)
		}, check: wantVerdict(CauseCluster, "exceeded quota: pods, requested: pods=1")},
		{name: "no node for the new pod is the cluster's", pod: pending, check: wantVerdict(CauseCluster, "0/2 nodes are available: 2 node(s) were unschedulable")},
		{name: "progress deadline with a running container never Ready is the image's", pod: runningNotReady, then: func(c *fake.Clientset) {
			d, _, _ := rolloutObjects(false)
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: TimedOutReason}}
			update(c, deploymentsGVR, d)
		}, check: wantFailed(CauseImage, "running but not Ready")},
		{name: "a timeout with a container never Ready is the image's", pod: runningNotReady, timeout: 300 * time.Millisecond,
			check: wantTimeout(CauseImage, "running but not Ready")},
		{name: "a timeout while the container is created blames no one", pod: waiting("ContainerCreating", ""), timeout: 300 * time.Millisecond,
			check: wantTimeout(CauseUnknown, "ContainerCreating")},
		{name: "a timeout with no new pod blames no one", pod: gone, timeout: 300 * time.Millisecond,
			check: wantTimeout(CauseUnknown, "no pod of the new revision")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, rs, pod := rolloutObjects(tt.complete)
			if tt.unobserved {
				d.Status.ObservedGeneration = 1
			}
			if tt.pod != nil {
				tt.pod(pod)
			}
			objs := []runtime.Object{d, rs}
			if pod.Name != "" {
				objs = append(objs, pod)
			}
			for i := range tt.events {
				objs = append(objs, &tt.events[i])
			}
			c := fake.NewSimpleClientset(objs...)
			if tt.reactors != nil {
				tt.reactors(c)
			}
			if tt.then != nil {
				once := false
				c.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
					if !once {
						once = true
						// The watch is set up after this reactor returns;
						// the tracker replays objects newer than the list.
						tt.then(c)
					}
					return false, nil, nil
				})
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 30 * time.Second // a bound, not a synchronisation: every case ends on an event
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			ours := d.Spec.Template.DeepCopy()
			_, err := Wait(ctx, c, "apps", "api", WaitOptions{Template: ours, Container: "api", Grace: 20 * time.Millisecond})
			tt.check(t, err)
		})
	}
}

// gone: the new ReplicaSet has no pod.
func gone(p *corev1.Pod) { *p = corev1.Pod{} }

func pending(p *corev1.Pod) {
	p.Status.Phase = corev1.PodPending
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."}}
}

func runningNotReady(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "api", Ready: false, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

// wantTimeout: the wait's context ended; the error is a verdict on the
// evidence that still unwraps to context.DeadlineExceeded.
func wantTimeout(cause Cause, part string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want a deadline", err)
		}
		var fe *FailedError
		if !errors.As(err, &fe) || !fe.Timeout {
			t.Fatalf("Wait = %#v, want a FailedError with Timeout", err)
		}
		wantFailed(cause, part)(t, err)
	}
}

// wantVerdict: wantFailed, and before the deadline: the evidence decided,
// not the clock.
func wantVerdict(cause Cause, part string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want a verdict before the deadline", err)
		}
		wantFailed(cause, part)(t, err)
	}
}

func wantNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Wait = %v, want success", err)
	}
}

// wantFailed: a verdict on evidence, reached before any deadline (unless
// wrapped by wantTimeout).
func wantFailed(cause Cause, part string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var fe *FailedError
		if !errors.As(err, &fe) {
			t.Fatalf("Wait = %v, want a FailedError", err)
		}
		if fe.Timeout != errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Timeout = %v but errors.Is(DeadlineExceeded) = %v", fe.Timeout, !fe.Timeout)
		}
		if fe.Cause != cause {
			t.Errorf("cause = %s, want %s (%v)", fe.Cause, cause, err)
		}
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
}

func update(c *fake.Clientset, gvr schema.GroupVersionResource, obj runtime.Object) {
	if err := c.Tracker().Update(gvr, obj, "apps"); err != nil {
		panic(err)
	}
}

func pullFailed(pod, msg string) corev1.Event {
	return corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: pod + ".1", Namespace: "apps"}, Reason: "Failed", Message: msg,
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod, UID: types.UID("pod-uid")}}
}

func fieldsV1(s string) *metav1.FieldsV1 { return &metav1.FieldsV1{Raw: []byte(s)} }

func ptr[T any](v T) *T { return &v }
