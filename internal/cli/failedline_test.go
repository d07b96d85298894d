package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// TestManualCommandsLogTheirFailure: a rollback or hold that failed after
// the log was opened but before it acted (no client, the lock held by a
// run, the Deployment's read refused) left "log opened" and nothing else:
// whoever reads the log saw a command that never ended (issue 18, fourth
// pass). Every failure ends in "<command> failed" with the error, as a
// run's ends in "run failed".
func TestManualCommandsLogTheirFailure(t *testing.T) {
	deployment := func(name string) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: name, Image: "ghcr.io/x/" + name + ":1"}},
			}}},
		}
	}
	noClients := func(*fake.Clientset) error { return errors.New("no kubeconfig: test") }
	forbidGet := func(cs *fake.Clientset) error {
		cs.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "api", errors.New("RBAC: test"))
		})
		return nil
	}
	tests := []struct {
		name     string
		args     []string
		setup    func(*fake.Clientset) error // an error: f.Clients returns it
		holdLock bool
		want     []string // lines the log must have, each as substrings
	}{
		{name: "rollback without clients", args: []string{"rollback", "api"}, setup: noClients,
			want: []string{`level=ERROR msg="rollback failed"`, "cmd=rollback", "svc=api", "no kubeconfig: test"}},
		{name: "hold without clients", args: []string{"hold", "api", "--reason", "freeze"}, setup: noClients,
			want: []string{`level=ERROR msg="hold failed"`, "svc=api", "no kubeconfig: test"}},
		{name: "rollback while a run holds the lock", args: []string{"rollback", "api", "--lock-timeout", "0"}, holdLock: true,
			want: []string{`level=ERROR msg="rollback failed"`, "svc=api", "autodeploy run test-holder"}},
		{name: "rollback whose read is refused", args: []string{"rollback", "api"}, setup: forbidGet,
			want: []string{`level=ERROR msg="rollback failed"`, "svc=api", "RBAC: test"}},
		{name: "hold whose read is refused", args: []string{"hold", "api", "--reason", "freeze"}, setup: forbidGet,
			want: []string{`level=ERROR msg="hold failed"`, "svc=api", "RBAC: test"}},
		{name: "hold --all, one Deployment missing", args: []string{"hold", "--all", "--reason", "freeze"},
			want: []string{`level=ERROR msg="hold failed"`, "svc=web", "not found"}},
		// deploy.Forget logged its own "forget failed" beside the
		// session's (issue 18, fifth pass).
		{name: "forget whose read is refused", args: []string{"forget", "api"}, setup: forbidGet,
			want: []string{`level=ERROR msg="forget failed"`, "svc=api", "RBAC: test"}},
		{name: "resume of a missing Deployment", args: []string{"resume", "web"},
			want: []string{`level=ERROR msg="resume failed"`, "svc=web", "not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath, logPath, lockPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "autodeploy.log"), filepath.Join(dir, "lock")
			body := fmt.Sprintf("lockFile: %q\nlog: {file: %q}\nservices:\n  - name: api\n  - name: web\n", lockPath, logPath)
			if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.holdLock {
				l, err := lock.TryAcquire(lockPath, "autodeploy run test-holder", time.Now())
				if err != nil {
					t.Fatal(err)
				}
				defer l.Release()
			}
			cs := fake.NewSimpleClientset(deployment("api"))
			var clientsErr error
			if tt.setup != nil {
				clientsErr = tt.setup(cs)
			}
			var out, errOut strings.Builder
			f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
			f.Clients = func() (*kube.Clients, error) {
				if clientsErr != nil {
					return nil, clientsErr
				}
				return &kube.Clients{Kube: cs, Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Source: "test"}, nil
			}
			if code := Execute(context.Background(), f, append([]string{"--config", cfgPath}, tt.args...)); code == ExitOK {
				t.Fatalf("%v: exit 0, stdout %q; want a failure", tt.args, out.String())
			}
			lines, err := runlog.Tail(logPath, 100)
			if err != nil {
				t.Fatal(err)
			}
			// Once: resume's own "resume failed" and the session's were two.
			n := 0
			for _, l := range lines {
				if containsAll(l, tt.want) {
					n++
				}
			}
			if n == 1 {
				return
			}
			t.Errorf("%v: %d log lines with %q, want 1; stderr %q, the log:\n%s", tt.args, n, tt.want, errOut.String(), strings.Join(lines, "\n"))
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
