package deploy

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	k8stesting "k8s.io/client-go/testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// Which annotations forget counts as autodeploy's records: every
// autodeploy.dev/* key, and the reconcile lever only beside its record
// (or a legacy hold that says it set it); nothing of anyone else's.
func TestPlanForget(t *testing.T) {
	const (
		lever  = flux.KustomizeReconcileAnnotation
		record = gitops.AnnReconcileDisabled
	)
	rec := `{"by":"alice@ops","kustomization":"flux-system/apps"}`
	for _, tt := range []struct {
		name        string
		d, rs       map[string]string
		wantD       []string
		wantRS      []string
		wantForeign bool
	}{
		{name: "nothing recorded", d: map[string]string{"kubernetes.io/change-cause": "x"}, rs: map[string]string{"deployment.kubernetes.io/revision": "2"}},
		{name: "every mark",
			d: map[string]string{AnnHold: `{}`, AnnFailedImage: `{}`, AnnRetry: `{}`, AnnAlerted: "k", AnnVerified: "true", AnnDeployedImage: "img", AnnPreviousRevision: "3",
				"kubernetes.io/change-cause": "autodeploy rollback", "deployment.kubernetes.io/revision": "4"},
			rs:     map[string]string{AnnHold: `{}`, AnnFailedImage: `{}`, AnnVerified: "true", "deployment.kubernetes.io/revision": "2"},
			wantD:  []string{AnnAlerted, AnnDeployedImage, AnnFailedImage, AnnHold, AnnPreviousRevision, AnnRetry, AnnVerified},
			wantRS: []string{AnnFailedImage, AnnHold, AnnVerified}},
		{name: "a mark of a later version is autodeploy's too", d: map[string]string{"autodeploy.dev/future": "x"}, wantD: []string{"autodeploy.dev/future"}},
		{name: "lookalike domains are not autodeploy's", d: map[string]string{"autodeploy.dev.example.com/x": "1", "x.autodeploy.dev/y": "1", "autodeploy.devops/z": "1"}},
		{name: "lever with its record goes with it",
			d: map[string]string{lever: flux.ReconcileDisabled, record: rec, AnnHold: `{}`}, rs: map[string]string{lever: flux.ReconcileDisabled, record: rec},
			wantD: []string{AnnHold, record, lever}, wantRS: []string{record, lever}},
		{name: "lever without record is someone else's",
			d: map[string]string{lever: flux.ReconcileDisabled, AnnHold: `{}`}, rs: map[string]string{lever: flux.ReconcileDisabled},
			wantD: []string{AnnHold}, wantForeign: true},
		{name: "record without lever goes",
			d: map[string]string{record: rec}, rs: map[string]string{record: rec},
			wantD: []string{record}, wantRS: []string{record}},
		{name: "a lever of a held service goes: forget is an explicit release",
			d:     map[string]string{lever: flux.ReconcileDisabled, record: rec, AnnHold: `{"by":"bob@ops"}`},
			wantD: []string{AnnHold, record, lever}},
		{name: "legacy hold: its lever is autodeploy's, and so are its record-less ReplicaSet copies",
			d:     map[string]string{lever: flux.ReconcileDisabled, AnnHold: `{"reconcileDisabled":true}`},
			rs:    map[string]string{lever: flux.ReconcileDisabled, AnnHold: `{"reconcileDisabled":true}`},
			wantD: []string{AnnHold, lever}, wantRS: []string{AnnHold, lever}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "default", Annotations: tt.d}}
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "default", Annotations: tt.rs}}
			p := planForget(d, []*appsv1.ReplicaSet{rs})
			if !slices.Equal(p.Deployment, tt.wantD) {
				t.Errorf("Deployment keys = %q, want %q", p.Deployment, tt.wantD)
			}
			if got := p.ReplicaSets["api-1"]; !slices.Equal(got, tt.wantRS) {
				t.Errorf("ReplicaSet keys = %q, want %q", got, tt.wantRS)
			}
			if p.Foreign != tt.wantForeign {
				t.Errorf("Foreign = %v, want %v", p.Foreign, tt.wantForeign)
			}
		})
	}
}

// forget looked for exclusions in the ImageRepository of every configured
// service, a promoted one too, which has no ImagePolicy: "read ImagePolicy
// /: name is required", exit 1, for every name, on any config with a
// pipeline (issue 18, fifth pass). A promoted service has no repository of
// its own to search.
func TestForgetWithAPromotedService(t *testing.T) {
	c := newFakeCluster(t, aaa, bbb, true)
	prod := config.Service{Name: "prod", Namespace: "apps", Deployment: "prod", Promote: &config.Promote{From: svc().Name}}
	cfg := &config.Config{Services: []config.Service{svc(), prod}, Flux: config.Flux{Namespace: "flux-system"}}
	// client-go's dynamic client refuses a GET without a name before any
	// request ("name is required", dynamic/simple.go); its fake does not.
	c.dyn.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == "" {
			return true, nil, errors.New("name is required")
		}
		return false, nil, nil
	})
	var log bytes.Buffer
	m := &Manager{Kube: c.kube, Dynamic: c.dyn, Log: runlog.New(&log), Now: func() time.Time { return fcNow }, By: "ops@host"}
	for _, name := range []string{svc().Name, "prod", "old-name"} {
		res, err := m.Forget(t.Context(), cfg, name, true)
		if err != nil {
			t.Errorf("Forget(%s) = %v\n%s", name, err, log.String())
			continue
		}
		if want := []string{"flux-system/" + fcName}; !slices.Equal(res.Searched, want) {
			t.Errorf("Forget(%s) searched %q, want %q", name, res.Searched, want)
		}
	}
}
