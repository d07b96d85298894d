package deploy

import (
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
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestSoakEvidence(t *testing.T) {
	at := func(min int) metav1.Time { return metav1.NewTime(time.Date(2026, 11, 25, 10, min, 0, 0, time.UTC)) }
	since, until := at(0).Time, at(10).Time
	pod := func(created int, mut ...func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-1", CreationTimestamp: at(created)},
			Status: corev1.PodStatus{
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at(created)}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "api", Ready: true}},
			}}
		for _, m := range mut {
			m(&p)
		}
		return p
	}
	restarted := func(min int) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].RestartCount = 1
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: at(min)}
		}
	}
	unready := func(min int) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", LastTransitionTime: at(min)}}
		}
	}
	tests := []struct {
		name string
		pods []corev1.Pod
		want string // part of the evidence, "" for none
	}{
		{"healthy pods", []corev1.Pod{pod(-1), pod(-2)}, ""},
		{"a restart during the soak", []corev1.Pod{pod(-1, restarted(4))}, "container api of pod api-1 restarted at 2026-11-25T10:04:00Z (exit code 137, OOMKilled; restarts: 1)"},
		{"a restart before the verification is the rollout's", []corev1.Pod{pod(-2, restarted(-1))}, ""},
		{"a restart after the soak ended is not the soak's", []corev1.Pod{pod(-1, restarted(12))}, ""},
		{"a pod that left Ready", []corev1.Pod{pod(-1, unready(3))}, "pod api-1 left Ready at 2026-11-25T10:03:00Z (ContainersNotReady)"},
		{"a pod created after the verification, not Ready yet", []corev1.Pod{pod(2, unready(2))}, ""},
		{"a pod being deleted proves nothing", []corev1.Pod{pod(-1, unready(3), func(p *corev1.Pod) { now := at(3); p.DeletionTimestamp = &now })}, ""},
		{"a new pod that restarted counts", []corev1.Pod{pod(2, restarted(5))}, "restarted at 2026-11-25T10:05:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := soakEvidence(tt.pods, since, until)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("soakEvidence = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMarkSoakedConflict: the soak's mark is a conditional write; a
// conflict (409 once: someone wrote the Deployment in between) reads it
// again and writes again, only while it still runs the soaked image.
func TestMarkSoakedConflict(t *testing.T) {
	tests := []struct {
		name    string
		between func(*appsv1.Deployment) // the write that made the patch conflict
		wantErr string
		passed  bool
	}{
		{name: "the controller wrote its status: written on the retry", between: func(d *appsv1.Deployment) { d.Status.ObservedGeneration++ }, passed: true},
		{name: "a person set another image: nothing written", between: func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = repo + ":hotfix" }, wantErr: "the Deployment runs " + repo + ":hotfix now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dep(bbb, 2)
			d.ResourceVersion = "1"
			kube := kubefake.NewSimpleClientset(d.DeepCopy()) //nolint:staticcheck // as fakecluster_test.go: JSON patches with a test op
			conflicts := 0
			kube.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
				if conflicts > 0 {
					return false, nil, nil
				}
				conflicts++
				cur := d.DeepCopy()
				tt.between(cur)
				if err := kube.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), cur, cur.Namespace); err != nil {
					t.Fatal(err)
				}
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, d.Name, errors.New("the object has been modified"))
			})
			r := &Runner{Kube: kube}
			verified := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
			err := r.markSoaked(t.Context(), d, svc(), SoakMark{Image: bbb, VerifiedAt: verified, Until: verified.Add(10 * time.Minute)})
			if conflicts != 1 {
				t.Fatalf("%d conflicts: the row proves nothing", conflicts)
			}
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("markSoaked: %v, want %q", err, tt.wantErr)
			}
			got, _ := kube.AppsV1().Deployments(d.Namespace).Get(t.Context(), d.Name, metav1.GetOptions{})
			m, ok := ParseSoak(got.Annotations)
			if (ok && m.Passed) != tt.passed {
				t.Errorf("soak mark %+v (%v), want passed %v", m, ok, tt.passed)
			}
		})
	}
}
