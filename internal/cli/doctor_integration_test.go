//go:build integration

package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/doctor"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// doctor fails a leaseNamespace that does not exist, where every run
// fails to take the lock (issue 18, item 4), and passes one that does.
func TestDoctorLeaseNamespace(t *testing.T) {
	e := kubetest.New(t)
	for _, tc := range []struct{ ns, status, detail string }{
		{"autodeploy-no-such-namespace", doctor.Fail, "namespace autodeploy-no-such-namespace does not exist"},
		{e.Namespace, doctor.OK, "Lease " + e.Namespace + "/autodeploy"},
	} {
		cfg, _ := writeConfig(t, "lock: {type: lease, leaseNamespace: "+tc.ns+"}\n")
		_, out, _ := execute(t, nil, "doctor", "-o", "json", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		var rep doctor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var lock *doctor.Check
		for i, c := range rep.Checks {
			if c.Name == "lock" {
				lock = &rep.Checks[i]
			}
		}
		if lock == nil || lock.Status != tc.status || !strings.Contains(lock.Detail, tc.detail) {
			t.Errorf("leaseNamespace %s: lock check %+v, want %s with %q\n%s", tc.ns, lock, tc.status, tc.detail, out)
		}
	}
}
