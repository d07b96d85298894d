package cli

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// history shows whence each revision of a promoted service came (issue
// 19): the promotion record the deploy patch leaves, as the deployment
// controller copies it to the revision's ReplicaSet, read only for the
// image it names (a later kubectl set image copies the stale record too).
func TestHistoryPromotions(t *testing.T) {
	const reg = "ghcr.io/acme/api:"
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "production", UID: types.UID("d")}}
	rs := func(rev int64, tag string, promo *deploy.Promotion, cause string) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "api-" + tag, CreationTimestamp: metav1.NewTime(at.Add(time.Duration(rev) * time.Hour)),
			Annotations: map[string]string{rollout.RevisionAnnotation: strconv.FormatInt(rev, 10), rollout.ChangeCauseAnnotation: cause}},
			Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: reg + tag}}}}}}
		if promo != nil {
			b, err := json.Marshal(promo)
			if err != nil {
				t.Fatal(err)
			}
			r.Annotations[deploy.AnnPromotion] = string(b)
		}
		return r
	}
	owned := []*appsv1.ReplicaSet{
		// Newest first, as rollout.Owned sorts them.
		rs(4, "sha-4", &deploy.Promotion{From: "staging", Image: reg + "sha-3", At: at}, "kubectl set image"),
		rs(3, "sha-3", &deploy.Promotion{From: "staging", Image: reg + "sha-3", At: at, By: "alice@bastion", Reason: "customer fix"}, "autodeploy: x -> y (promoted from staging by alice@bastion: customer fix)"),
		rs(2, "sha-2", &deploy.Promotion{From: "staging", Image: reg + "sha-2", At: at}, "autodeploy: x -> y (promoted from staging)"),
		rs(1, "sha-1", nil, ""),
	}
	revs := revisions(d, owned, "api")
	tests := []struct {
		rev  int64
		want string // promotionText
	}{{4, "-"}, {3, "from staging by alice@bastion: customer fix"}, {2, "from staging"}, {1, "-"}}
	for i, tt := range tests {
		if got := promotionText(revs[i].Promotion); revs[i].Revision != tt.rev || got != tt.want {
			t.Errorf("revision %d: promoted %q, want revision %d %q", revs[i].Revision, got, tt.rev, tt.want)
		}
	}
	var out bytes.Buffer
	if err := writeHistory(&out, revs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], "PROMOTED") || !strings.Contains(lines[3], "from staging by alice@bastion: customer fix") || !strings.Contains(lines[2], "from staging ") {
		t.Errorf("history:\n%s", out.String())
	}
	// A service never promoted keeps kubectl's columns.
	out.Reset()
	if err := writeHistory(&out, revs[3:]); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "PROMOTED") {
		t.Errorf("a PROMOTED column without a promotion:\n%s", out.String())
	}
}
