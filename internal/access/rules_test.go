package access

import (
	"slices"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// What each command reads is in the read-only Role when the command is
// status: status shows the run in progress from the Lease, and without
// get leases it showed none, silently (issue 18, item 6).
func TestReadOnlyCoversStatus(t *testing.T) {
	cfg, err := config.Parse([]byte("lock: {type: lease, leaseNamespace: locks}\nservices:\n  - name: api\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		group, resource, verb, ns string
	}{
		{"coordination.k8s.io", "leases", "get", "locks"},
		{"apps", "deployments", "list", "default"},
		{"apps", "replicasets", "list", "default"},
		{"", "pods", "list", "default"},
		{"image.toolkit.fluxcd.io", "imagepolicies", "list", "flux-system"},
	} {
		found := slices.ContainsFunc(Checks(cfg, true), func(c Check) bool {
			return c.Rule.Group == tt.group && c.Rule.Resource == tt.resource && c.Rule.Verb == tt.verb && c.Namespace == tt.ns &&
				slices.Contains(c.Rule.Commands, "status")
		})
		if !found {
			t.Errorf("the read-only checks lack %s %s.%s in %s for status", tt.verb, tt.resource, tt.group, tt.ns)
		}
	}
	// Every rule status uses is read-only: the read-only Role is what
	// status alone needs.
	for _, r := range Rules {
		if slices.Contains(r.Commands, "status") && !r.ReadOnly {
			t.Errorf("%s %s is used by status but not in the read-only Role", r.Verb, r.Resource)
		}
	}
}
