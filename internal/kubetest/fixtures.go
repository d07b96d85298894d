package kubetest

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

// Deployment is a fixture builder for a Deployment with one container named
// after it (plus any Sidecars), a RollingUpdate strategy that never drops
// below the desired replicas, and fast progress so tests stay short.
type Deployment struct {
	Name      string
	Image     string
	Replicas  int32
	Sidecars  []corev1.Container
	Paused    bool
	Deadline  int32 // progressDeadlineSeconds; 0 = Kubernetes' default (600)
	Labels    map[string]string
	Namespace string // default: the Env's namespace
	// NodeSelector and Tolerations place the pods (on a node of the
	// test's own: Env.CreateNode).
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

// Object builds the Deployment.
func (d Deployment) Object(ns string) *appsv1.Deployment {
	if d.Namespace != "" {
		ns = d.Namespace
	}
	replicas := d.Replicas
	if replicas == 0 {
		replicas = 1
	}
	maxUnavailable := intstr.FromInt32(0)
	maxSurge := intstr.FromInt32(1)
	labels := map[string]string{"app": d.Name}
	containers := append([]corev1.Container{{Name: d.Name, Image: d.Image}}, d.Sidecars...)
	obj := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: ns, Labels: d.Labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Paused:   d.Paused,
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: containers, NodeSelector: d.NodeSelector, Tolerations: d.Tolerations},
			},
		},
	}
	if d.Deadline > 0 {
		obj.Spec.ProgressDeadlineSeconds = &d.Deadline
	}
	return obj
}

// CreateDeployment creates d in the Env's namespace.
func (e *Env) CreateDeployment(d Deployment) *appsv1.Deployment {
	e.T.Helper()
	out, err := e.Kube.AppsV1().Deployments(e.Namespace).Create(context.Background(), d.Object(e.Namespace), metav1.CreateOptions{})
	if err != nil {
		e.T.Fatalf("create deployment %s: %v", d.Name, err)
	}
	return out
}

// GetDeployment reads a Deployment of the Env's namespace.
func (e *Env) GetDeployment(name string) *appsv1.Deployment {
	e.T.Helper()
	d, err := e.Kube.AppsV1().Deployments(e.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.T.Fatalf("get deployment %s: %v", name, err)
	}
	return d
}

// Image returns the image of the Deployment's first container.
func Image(d *appsv1.Deployment) string { return d.Spec.Template.Spec.Containers[0].Image }

// CreateNode creates a KWOK node for the test alone, deleted when it ends:
// tainted so that no other test's pod lands there. The returned
// Deployment fields place pods on it; it waits until the node is Ready.
func (e *Env) CreateNode() (name string, selector map[string]string, tolerations []corev1.Toleration) {
	e.T.Helper()
	ctx := context.Background()
	name = "node-" + e.Namespace
	taint := corev1.Taint{Key: "autodeploy.dev/test", Value: e.Namespace, Effect: corev1.TaintEffectNoSchedule}
	if err := testcluster.CreateNode(ctx, e.Kube, name, taint); err != nil {
		e.T.Fatalf("create node %s: %v", name, err)
	}
	e.T.Cleanup(func() { _ = e.Kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	Eventually(e.T, 60*time.Second, "node "+name+" Ready", func(ctx context.Context) (bool, error) {
		n, err := e.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	return name, map[string]string{"kubernetes.io/hostname": name},
		[]corev1.Toleration{{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: taint.Value, Effect: taint.Effect}}
}
