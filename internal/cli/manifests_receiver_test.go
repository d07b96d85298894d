package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
)

// imagePolicy is an ImagePolicy in ns selecting from the ImageRepository
// repoNS/repo ("" repoNS: the policy's own namespace).
func imagePolicy(ns, name, repoNS, repo string) *unstructured.Unstructured {
	ref := map[string]any{"name": repo}
	if repoNS != "" {
		ref["namespace"] = repoNS
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": flux.ImageGroup + "/v1", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"imageRepositoryRef": ref},
	}}
}

// receiverFactory runs commands against fake clients: a Flux 2.7 image API,
// dyn's objects and kc's.
func receiverFactory(t *testing.T, kc *fake.Clientset, objs ...runtime.Object) (*Factory, *bytes.Buffer, *bytes.Buffer, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	kc.Resources = []*metav1.APIResourceList{{GroupVersion: flux.ImageGroup + "/v1"}}
	dc := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), objs...)
	var out, errOut bytes.Buffer
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
	f.Clients = func() (*kube.Clients, error) {
		return &kube.Clients{Kube: kc, Dynamic: dc, Config: &rest.Config{Host: "https://127.0.0.1:6443"}, Source: "test"}, nil
	}
	return f, &out, &errOut, dc
}

const receiverServices = `flux: {namespace: flux-system}
services:
  - name: api
    namespace: apps
    imagePolicy: flux-system/api
  - name: api-canary
    namespace: apps
    imagePolicy: flux-system/api-canary
  - name: web
    namespace: apps
    imagePolicy: apps/web
  - name: web-prod
    namespace: prod
    promote: {from: web, after: 1h}
`

var tokenLine = regexp.MustCompile(`(?m)^  token: (\S+)$`)

func TestManifestsReceiver(t *testing.T) {
	cfg, dir := writeConfig(t, receiverServices)
	policies := []runtime.Object{
		imagePolicy("flux-system", "api", "", "api"),
		imagePolicy("flux-system", "api-canary", "", "api"), // the same repository: listed once
		imagePolicy("apps", "web", "images", "web"),         // in another namespace
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "autodeploy-token", Namespace: "flux-system"}, Data: map[string][]byte{"token": []byte("old")}}
	tests := []struct {
		name       string
		args       []string
		secrets    []runtime.Object
		wantSecret bool
		token      string // "" = generated: 64 hex digits
		stderr     string
	}{
		{name: "generated token", wantSecret: true, stderr: "The token is only in the Secret flux-system/autodeploy-token"},
		{name: "token from a file, trailing line break dropped", args: []string{"--token-file", tokenFile}, wantSecret: true, token: "from-the-file"},
		// The webhook's path derives from the token: a new one would
		// break the webhook GitHub has.
		{name: "existing Secret kept", secrets: []runtime.Object{existing}, stderr: "Secret flux-system/autodeploy-token exists: not printed"},
		{name: "existing Secret replaced from a file", args: []string{"--token-file", tokenFile}, secrets: []runtime.Object{existing}, wantSecret: true, token: "from-the-file"},
		{name: "another name and namespace", args: []string{"--name", "ghcr", "-n", "hooks"}, wantSecret: true, stderr: "kubectl -n hooks get receiver ghcr -o jsonpath='{.status.webhookPath}'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, out, errOut, _ := receiverFactory(t, fake.NewSimpleClientset(tt.secrets...), policies...)
			code := Execute(context.Background(), f, append([]string{"--config", cfg, "manifests", "receiver"}, tt.args...))
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, want := range []string{
				"kind: Receiver", "type: github", `events: ["ping", "package"]`,
				"      name: api\n      namespace: flux-system\n", "      name: web\n      namespace: images\n",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out.String(), "kind: ImageRepository"); n != 2 {
				t.Errorf("%d ImageRepositories listed, want 2 (api once, web):\n%s", n, out)
			}
			m := tokenLine.FindStringSubmatch(out.String())
			if (m != nil) != tt.wantSecret {
				t.Fatalf("Secret printed: %v, want %v:\n%s", m != nil, tt.wantSecret, out)
			}
			if m != nil {
				raw, err := base64.StdEncoding.DecodeString(m[1])
				if err != nil {
					t.Fatal(err)
				}
				token := string(raw)
				if tt.token != "" && token != tt.token {
					t.Errorf("token %q, want %q", token, tt.token)
				}
				if tt.token == "" && !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(token) {
					t.Errorf("generated token %q is not 32 random bytes in hex", token)
				}
				if strings.Contains(errOut.String(), token) || strings.Contains(errOut.String(), m[1]) {
					t.Errorf("stderr quotes the token:\n%s", errOut)
				}
			}
			for _, want := range []string{"Packages", "application/json", "status.webhookPath", "webhook-receiver", tt.stderr} {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}
	// Two runs generate two tokens: crypto/rand, not a constant.
	var tokens []string
	for range 2 {
		f, out, _, _ := receiverFactory(t, fake.NewSimpleClientset(), policies...)
		if code := Execute(context.Background(), f, []string{"--config", cfg, "manifests", "receiver"}); code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		tokens = append(tokens, tokenLine.FindStringSubmatch(out.String())[1])
	}
	if tokens[0] == tokens[1] {
		t.Errorf("two runs generated the same token")
	}
}

func TestManifestsReceiverRefuses(t *testing.T) {
	cfg, dir := writeConfig(t, receiverServices)
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	forbidSecrets := func(kc *fake.Clientset) {
		kc.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "autodeploy-token", nil)
		})
	}
	all := []runtime.Object{imagePolicy("flux-system", "api", "", "api"), imagePolicy("flux-system", "api-canary", "", "api"), imagePolicy("apps", "web", "", "web")}
	tests := []struct {
		name    string
		args    []string
		objs    []runtime.Object
		kube    func(*fake.Clientset)
		code    ExitCode
		errPart string
	}{
		{name: "a policy missing", objs: all[:2], code: ExitServiceProblem, errPart: "service web: ImagePolicy apps/web not found"},
		{name: "bad name", args: []string{"--name", "Bad_Name"}, objs: all, code: ExitUsage, errPart: `--name "Bad_Name" is not a valid name`},
		{name: "empty token file", args: []string{"--token-file", emptyFile}, objs: all, code: ExitUsage, errPart: "--token-file: " + emptyFile + " is empty"},
		{name: "token file missing", args: []string{"--token-file", filepath.Join(dir, "nope")}, objs: all, code: ExitUsage, errPart: "--token-file"},
		{name: "Secret unknowable", objs: all, kube: forbidSecrets, code: ExitForbidden, errPart: "cannot tell whether Secret flux-system/autodeploy-token exists"},
		{name: "Flux not installed", objs: all, kube: func(kc *fake.Clientset) { kc.Resources = nil }, code: ExitUnreachable, errPart: "cannot write the Receiver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewSimpleClientset()
			f, out, errOut, _ := receiverFactory(t, kc, tt.objs...)
			if tt.kube != nil {
				tt.kube(kc)
			}
			code := Execute(context.Background(), f, append([]string{"--config", cfg, "manifests", "receiver"}, tt.args...))
			if code != tt.code || !strings.Contains(errOut.String(), tt.errPart) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, errOut, tt.code, tt.errPart)
			}
			if out.Len() != 0 {
				t.Errorf("stdout on failure:\n%s", out)
			}
		})
	}
}

// An unreachable cluster is said as such: the Receiver's resources come
// from it (exit 3).
func TestManifestsReceiverUnreachable(t *testing.T) {
	cfg, _ := writeConfig(t, receiverServices)
	code, out, stderr := execute(t, nil, "--config", cfg, "--kubeconfig", unreachableKubeconfig(t), "--request-timeout", "2s", "manifests", "receiver")
	if code != ExitUnreachable || !strings.Contains(stderr, "cannot write the Receiver") || !strings.Contains(stderr, "cannot reach the Kubernetes API at https://127.0.0.1:1") || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

// On Flux 2.6 the ImageRepositories are served at v1beta2: the Receiver
// lists them at that version, which notification-controller GETs them at.
func TestManifestsReceiverFlux26(t *testing.T) {
	cfg, _ := writeConfig(t, "services:\n  - name: api\n    imagePolicy: flux-system/api\n")
	kc := fake.NewSimpleClientset()
	p := imagePolicy("flux-system", "api", "", "api")
	p.SetAPIVersion(flux.ImageGroup + "/v1beta2")
	f, out, errOut, _ := receiverFactory(t, kc, p)
	kc.Resources = []*metav1.APIResourceList{{GroupVersion: flux.ImageGroup + "/v1beta2"}}
	if code := Execute(context.Background(), f, []string{"--config", cfg, "manifests", "receiver"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out.String(), "    - apiVersion: image.toolkit.fluxcd.io/v1beta2\n      kind: ImageRepository\n      name: api\n") {
		t.Errorf("want the repository at v1beta2:\n%s", out)
	}
}
