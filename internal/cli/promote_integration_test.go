//go:build integration

package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// promote is run by a person (over ssh, from a script): it says what it did
// every time, on a terminal or not. It printed nothing without one, a
// promotion it refused included, as cron's runs print a standing problem
// once (issue 18, seventh pass).
func TestPromoteByHandSaysWhatItDid(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api-staging": reg + "api:sha-1"}, "")
	e.CreateDeployment(kubetest.Deployment{Name: "api", Image: reg + "api:sha-1"})
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// after: 1h: no run promotes on its own within the test.
	if _, err := f.WriteString("  - name: api\n    promote: {from: api-staging, after: 1h}\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	refl.Push("api-staging", reg+"api:sha-2")
	if code, _, stderr := execute(t, nil, "run", "--service", "api-staging", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("staging run: exit %d: %s", code, stderr)
	}
	// A build staging rolled back: remembered as failed there.
	refl.Push("api-staging", reg+"api:fail-3")
	if code, _, stderr := execute(t, nil, "run", "--service", "api-staging", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitDeployFailed {
		t.Fatalf("staging run of fail-3: exit %d: %s", code, stderr)
	}
	// Its promotion is refused twice: said both times.
	for i := range 2 {
		code, stdout, stderr := execute(t, nil, "promote", "api", "--image", reg+"api:fail-3", "--reason", "try", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		if code != ExitServiceProblem || !strings.Contains(stdout, "not promoted: "+reg+"api:fail-3 failed in api-staging") {
			t.Fatalf("refused promotion %d: exit %d, says nothing of it:\n%s\n%s", i+1, code, stdout, stderr)
		}
	}
	// Staging is back on sha-2, verified and soaked before fail-3: it is
	// promoted (it was "not verified there" until another build passed).
	code, stdout, stderr := execute(t, nil, "promote", "api", "--reason", "fix verified in staging", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitOK || !strings.Contains(stdout, "api") || !strings.Contains(stdout, "deployed") || !strings.Contains(stdout, "-> :sha-2") {
		t.Fatalf("promote: exit %d, want what it deployed on stdout:\n%s\n%s", code, stdout, stderr)
	}
	if got := kubetest.Image(e.GetDeployment("api")); got != reg+"api:sha-2" {
		t.Fatalf("production runs %s, want the promoted sha-2", got)
	}
}
