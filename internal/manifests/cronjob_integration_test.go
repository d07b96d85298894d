//go:build integration

package manifests

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// The API server's own validation takes the CronJob `manifests cronjob`
// writes for every schedule of cronJobSchedules (a server-side dry run:
// validated and admitted, never stored, so no Job starts). A schedule
// with TZ= in it, as the config has it, is refused by the same server
// (from Kubernetes 1.29 on): the check can fail.
func TestAPIServerAcceptsTheCronJob(t *testing.T) {
	e := kubetest.New(t)
	create := func(cj *batchv1.CronJob) error {
		cj.Namespace = e.Namespace
		_, err := e.Kube.BatchV1().CronJobs(e.Namespace).Create(context.Background(), cj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	v, err := e.Kube.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	minor, _ := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	for _, tc := range cronJobSchedules {
		cj := cronJobOf(t, cronJobFor(t, tc.spec))
		if err := create(cj.DeepCopy()); err != nil {
			t.Errorf("%q: the API server refuses the CronJob (schedule %q, timeZone %v): %v", tc.spec, cj.Spec.Schedule, cj.Spec.TimeZone, err)
		}
		if tc.timeZone == "" && tc.schedule == tc.spec {
			continue
		}
		if strings.Contains(tc.spec, "TZ=") && minor < 29 {
			// Kubernetes refuses TZ= in a schedule from 1.29 on; 1.28 (the
			// seed's k3s) takes it, unsupported ("CronJob limitations",
			// kubernetes.io/docs/concepts/workloads/controllers/cron-jobs):
			// spec.timeZone is right on both.
			continue
		}
		raw := cj.DeepCopy()
		raw.Spec.Schedule, raw.Spec.TimeZone = tc.spec, nil
		if err := create(raw); err == nil {
			t.Errorf("%q: the API server takes the config's schedule as it is: nothing to translate", tc.spec)
		}
	}
}

// cronJobOf decodes the CronJob among the documents of out.
func cronJobOf(t *testing.T, out string) *batchv1.CronJob {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var cj batchv1.CronJob
		err := dec.Decode(&cj)
		if errors.Is(err, io.EOF) {
			t.Fatalf("no CronJob in\n%s", out)
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if cj.Kind == "CronJob" {
			return &cj
		}
	}
}
