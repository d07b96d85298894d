package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autodeploy-dev/autodeploy/internal/kube"
)

// failAfter accepts its first n writes and then fails as a full disk does.
type failAfter struct {
	n   int
	buf bytes.Buffer
}

func (w *failAfter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, syscall.ENOSPC
	}
	w.n--
	return w.buf.Write(p)
}

// TestManualCommandsReportLostLogLines: hold, resume (and rollback, forget,
// which share the session) whose log stops taking lines after "log opened"
// said nothing and exited 0, so the log silently lacked who held what
// (issue 18, third pass); as a run does, they say so on stderr and exit 11.
func TestManualCommandsReportLostLogLines(t *testing.T) {
	for _, args := range [][]string{{"hold", "api", "--reason", "freeze"}, {"resume", "api"}} {
		t.Run(args[0], func(t *testing.T) {
			cfgPath := filepath.Join(t.TempDir(), "config.yaml")
			body := "lockFile: " + strconv.Quote(filepath.Join(t.TempDir(), "lock")) + "\nlog: {file: \"-\"}\nservices:\n  - name: api\n"
			if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "default"},
				Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "api", Image: "ghcr.io/x/api:1"}},
				}}},
			}
			if args[0] == "resume" {
				d.Annotations = map[string]string{"autodeploy.dev/hold": `{"by":"a@b","reason":"r","at":"2026-12-02T20:00:00Z"}`}
			}
			out := &failAfter{n: 1} // "log opened" only
			var errOut bytes.Buffer
			f := NewFactory(IOStreams{In: strings.NewReader(""), Out: out, ErrOut: &errOut}, func(string) string { return "" })
			f.Clients = func() (*kube.Clients, error) {
				return &kube.Clients{Kube: fake.NewSimpleClientset(d), Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Source: "test"}, nil
			}
			code := Execute(context.Background(), f, append([]string{"--config", cfgPath}, args...))
			if code != ExitLogLost || !strings.Contains(errOut.String(), "could not be written to the log") {
				t.Errorf("%v: exit %d, stderr %q; want exit %d saying lines were lost", args, code, errOut.String(), ExitLogLost)
			}
		})
	}
}
