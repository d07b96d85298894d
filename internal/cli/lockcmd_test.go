package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// Why the lock's holder is unknown, with the fix when RBAC refused it
// (issue 18, item 6).
func TestHolderError(t *testing.T) {
	forbidden := fmt.Errorf("cannot read Lease ns/autodeploy: %w", apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "autodeploy", errors.New("no")))
	clients := &kube.Clients{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Source: "kc"}
	for _, tt := range []struct {
		err  error
		want []string
	}{
		{forbidden, []string{"cannot read Lease ns/autodeploy", "forbidden", "whether a run is in progress is unknown", "autodeploy manifests rbac", "get leases"}},
		{errors.New("cannot read Lease ns/autodeploy: timeout"), []string{"timeout", "whether a run is in progress is unknown"}},
		// Said as every command says an unreachable server (hold's note
		// printed Go's dial error raw).
		{&url.Error{Op: "Get", URL: "https://127.0.0.1:1/apis", Err: syscall.ECONNREFUSED}, []string{"cannot reach the Kubernetes API at https://127.0.0.1:1 (kubeconfig kc)", "whether a run is in progress is unknown"}},
	} {
		got := holderError(clients, tt.err)
		for _, w := range tt.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("holderError(%v) = %v, want it to say %q", tt.err, got, w)
			}
		}
		if apierrors.IsForbidden(tt.err) != apierrors.IsForbidden(got) {
			t.Errorf("holderError(%v) lost the API error", tt.err)
		}
	}
}
