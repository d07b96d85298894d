//go:build integration

package cli

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/doctor"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// The binary inside a pod: no kubeconfig anywhere, the ServiceAccount token
// and CA where the kubelet mounts them, KUBERNETES_SERVICE_HOST/PORT set.
// A private mount namespace (unshare, as root) puts the files at the real
// path for this one process, leaving the host untouched.
func TestInClusterConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		// Mounting over /run needs root; CI and the dev machines run as root.
		t.Skip("needs root for a private mount namespace (unshare --mount)")
	}
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
	settledName(t, e, "api")
	r := &rbacEnv{e: e, refl: refl, cfg: cfg}
	r.apply(t, "--read-only")
	tok, err := e.Kube.CoreV1().ServiceAccounts(e.Namespace).CreateToken(context.Background(), "autodeploy-read-only", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var server *url.URL
	var ca []byte
	for _, c := range admin.Clusters {
		server, _ = url.Parse(c.Server)
		ca = c.CertificateAuthorityData
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"token": []byte(tok.Status.Token), "ca.crt": ca, "namespace": []byte(e.Namespace)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "autodeploy")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/autodeploy").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sa := "/run/secrets/kubernetes.io/serviceaccount"
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p ` + sa + `
cp "$SRC/token" "$SRC/ca.crt" "$SRC/namespace" ` + sa + `/
exec env -i HOME=/nonexistent KUBERNETES_SERVICE_HOST="$HOST" KUBERNETES_SERVICE_PORT="$PORT" "$BIN" "$@"`
	run := func(args ...string) (string, error) {
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "SRC="+dir, "HOST="+server.Hostname(), "PORT="+server.Port(), "BIN="+bin)
		out, err := cmd.Output()
		return string(out), err
	}
	out, err := run("doctor", "-o", "json", "--config", cfg)
	var rep doctor.Report
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("doctor in the pod: %v, %v\n%s", err, jerr, out)
	}
	found := false
	for _, c := range rep.Checks {
		if c.Name == "kubeconfig" {
			found = strings.HasPrefix(c.Detail, "in-cluster (server https://"+server.Host) && c.Status == doctor.OK
		}
		if c.Name == "api server" && c.Status != doctor.OK {
			t.Errorf("api server check: %+v", c)
		}
	}
	if !found {
		t.Fatalf("doctor did not use the in-cluster configuration:\n%s", out)
	}
	out, err = run("status", "-o", "json", "--config", cfg)
	if err != nil || !strings.Contains(out, `"healthy": true`) {
		t.Fatalf("status in the pod: %v\n%s", err, out)
	}
}
