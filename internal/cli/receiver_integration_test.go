//go:build integration

package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autodeploy-dev/autodeploy/internal/doctor"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// The API server, with the vendored notification CRDs, takes the Secret
// and Receiver `manifests receiver` prints (created for real: validated
// against the CRD's schema), and doctor judges what is there: a Receiver
// never reconciled fails as not Ready, one whose status says Ready passes.
// A second `manifests receiver` leaves the existing Secret out.
func TestReceiverManifestsAndDoctor(t *testing.T) {
	e := kubetest.New(t)
	ctx := context.Background()
	for _, name := range []string{"api", "web"} {
		e.CreateImageRepository(fluxsim.V1, e.Namespace, name+"-repo", reg+name)
		e.CreateImagePolicy(fluxsim.V1, e.Namespace, name, name+"-repo")
	}
	cfg, _ := writeConfig(t, "flux: {namespace: "+e.Namespace+"}\ndefaults: {namespace: "+e.Namespace+"}\nservices:\n  - name: api\n  - name: web\n")

	code, out, stderr := execute(t, nil, "--config", cfg, "--kubeconfig", e.Kubeconfig, "manifests", "receiver")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	docs := kubetest.DecodeAll(t, out)
	if len(docs) != 2 || docs[0].GetKind() != "Secret" || docs[1].GetKind() != "Receiver" {
		t.Fatalf("want a Secret and a Receiver, got %d documents:\n%s", len(docs), out)
	}
	gvrs := map[string]schema.GroupVersionResource{"Secret": {Version: "v1", Resource: "secrets"}, "Receiver": flux.ReceiverGVR}
	for _, d := range docs {
		if _, err := e.Dynamic.Resource(gvrs[d.GetKind()]).Namespace(e.Namespace).Create(ctx, d, metav1.CreateOptions{FieldManager: "test"}); err != nil {
			t.Fatalf("the API server refuses the %s: %v\n%s", d.GetKind(), err, out)
		}
	}
	// The schema is enforced: a Receiver of a type the CRD does not know
	// is refused by the same server, so the creation above means something.
	bad := docs[1].DeepCopy()
	bad.SetName("bad")
	_ = unstructured.SetNestedField(bad.Object, "ghcr", "spec", "type")
	if _, err := e.Dynamic.Resource(flux.ReceiverGVR).Namespace(e.Namespace).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Errorf("the API server takes a Receiver of type ghcr: the CRD's schema is not installed")
	}

	check := func(want string, detail string) {
		t.Helper()
		_, out, _ := execute(t, nil, "doctor", "-o", "json", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		var rep doctor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got []doctor.Check
		for _, c := range rep.Checks {
			if c.Name == "receiver" {
				got = append(got, c)
			}
		}
		if len(got) != 1 || got[0].Status != want || !strings.Contains(got[0].Detail, detail) {
			t.Errorf("receiver checks %+v, want one %s with %q", got, want, detail)
		}
	}
	key := e.Namespace + "/autodeploy"
	repos := e.Namespace + "/api-repo, " + e.Namespace + "/web-repo"
	// The CRD defaults status.observedGeneration to -1: a Receiver never
	// reconciled reads as a generation Flux has not seen.
	check(doctor.Fail, "Receiver "+key+" (for "+repos+") is not Ready: Flux has not reconciled generation 1 yet (it observed -1)")

	// What notification-controller writes once it has reconciled it.
	u, err := e.Dynamic.Resource(flux.ReceiverGVR).Namespace(e.Namespace).Get(ctx, "autodeploy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Object["status"] = map[string]any{"observedGeneration": u.GetGeneration(), "webhookPath": "/hook/0123", "conditions": []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "Succeeded", "message": "Receiver initialized for path: /hook/0123",
		"lastTransitionTime": metav1.Now().UTC().Format("2006-01-02T15:04:05Z"), "observedGeneration": u.GetGeneration()}}}
	if _, err := e.Dynamic.Resource(flux.ReceiverGVR).Namespace(e.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check(doctor.OK, "Receiver "+key+" lists every configured ImageRepository ("+repos+") and is Ready")

	code, out, stderr = execute(t, nil, "--config", cfg, "--kubeconfig", e.Kubeconfig, "manifests", "receiver")
	if docs := kubetest.DecodeAll(t, out); code != ExitOK || len(docs) != 1 || docs[0].GetKind() != "Receiver" || !strings.Contains(stderr, "exists: not printed") {
		t.Errorf("second run: exit %d, %d documents, stderr %q; want the Receiver alone\n%s", code, len(docs), stderr, out)
	}
}
