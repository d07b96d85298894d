//go:build integration

package manifests

import (
	"bytes"
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// The API server's own validation and admission take every object
// `manifests deployment` writes (a server-side dry run: nothing is
// stored, no pod starts): the Secret, the ConfigMap and the Deployment.
// The same Deployment with a selector its pods do not match is refused by
// the same dry run: the check can fail.
func TestAPIServerAcceptsTheDeployment(t *testing.T) {
	e := kubetest.New(t)
	ctx := context.Background()
	var b bytes.Buffer
	if err := Deployment(&b, leaseExample(t), CronJobOptions{Image: "registry.local/autodeploy:v1", Namespace: e.Namespace, ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err != nil {
		t.Fatal(err)
	}
	docs := documents(t, b.String())
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var s corev1.Secret
	var cm corev1.ConfigMap
	var d appsv1.Deployment
	decodeAs(t, docs["Secret"], &s)
	decodeAs(t, docs["ConfigMap"], &cm)
	decodeAs(t, docs["Deployment"], &d)
	if _, err := e.Kube.CoreV1().Secrets(e.Namespace).Create(ctx, &s, dry); err != nil {
		t.Errorf("the API server refuses the Secret: %v", err)
	}
	if _, err := e.Kube.CoreV1().ConfigMaps(e.Namespace).Create(ctx, &cm, dry); err != nil {
		t.Errorf("the API server refuses the ConfigMap: %v", err)
	}
	if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Create(ctx, d.DeepCopy(), dry); err != nil {
		t.Errorf("the API server refuses the Deployment: %v", err)
	}
	bad := d.DeepCopy()
	bad.Spec.Template.Labels = map[string]string{"app": "other"}
	if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Create(ctx, bad, dry); err == nil {
		t.Error("a Deployment whose selector matches none of its pods was accepted: the dry run validates nothing")
	}
	if len(docs) != 3 {
		t.Errorf("%d objects created, want 3", len(docs))
	}
}
