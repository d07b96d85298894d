//go:build integration

package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// What cron and an operator see when Flux reverted autodeploy's deploy
// (git behind: the automation suspended): `run` exits 7 with one stderr
// line naming kustomize-controller and the Kustomization, without deploying
// again; `status` exits 8 with the problem, and shows who writes the
// service from git.
func TestRunAndStatusWhenFluxReverts(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	img := reg + "api:sha-1"
	e.CreateImageRepository(fluxsim.V1, e.Namespace, "api", reg+"api")
	e.CreateImagePolicy(fluxsim.V1, e.Namespace, "api", "api")
	if err := refl.Track(context.Background(), "api", "api", img); err != nil {
		t.Fatal(err)
	}
	manifest := fluxsim.DeploymentManifest("api", img, e.Namespace, 1)
	g := e.StartGitOps(fluxsim.GitOptions{Files: map[string]string{"apps/api.yaml": manifest}, Path: "./apps"})
	settledName(t, e, "api")
	cfg, _ := writeConfig(t, fmt.Sprintf("flux: {namespace: %s, reconcileTimeout: 20s}\ndefaults: {namespace: %s, rolloutTimeout: 60s}\n", e.Namespace, e.Namespace))
	patch := []byte(`{"spec":{"suspend":true}}`)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(e.Namespace).Patch(context.Background(), fluxsim.AutomationName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	refl.Push("api", reg+"api:sha-2")
	if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("first run: exit %d %s", code, stderr)
	}
	if err := g.ReconcileKustomization(context.Background()); err != nil {
		t.Fatal(err)
	}
	settledName(t, e, "api")
	code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != ExitServiceProblem || stdout != "" || len(lines) != 1 ||
		!strings.Contains(lines[0], "reverted by kustomize-controller from Kustomization "+e.Namespace+"/apps: git has "+img) || !strings.Contains(lines[0], "fix:") {
		t.Fatalf("run after the revert: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if d := e.GetDeployment("api"); kubetest.Image(d) != img || rollout.ImageOwner(d, "api") != "kustomize-controller" {
		t.Fatalf("the run fought Flux: %s owned by %s", kubetest.Image(d), rollout.ImageOwner(d, "api"))
	}
	code, stdout, _ = execute(t, nil, "status", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	text := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{"reverted by kustomize-controller", "is suspended: git does not follow ImagePolicy", "git Kustomization " + e.Namespace + "/apps (Ready, applied main@sha1:"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	if code != ExitDegraded {
		t.Errorf("status exit %d, want %d", code, ExitDegraded)
	}
}
