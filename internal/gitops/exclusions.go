package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// A rollback under Flux GitOps sticks only if git stops asking for the bad
// image: the automation writes whatever the policy selects. The lever is
// the ImageRepository's spec.exclusionList (Flux's own, documented at
// fluxcd.io/flux/components/image/imagerepositories/#exclusion-list):
// with the bad tag excluded, the policy selects the tag before it again,
// the automation commits that, and Flux's next apply agrees with the
// rolled-back cluster (observed with the real controllers: git, policy
// and cluster agree within about two seconds). It is per repository, so
// no other service is frozen.
//
// autodeploy records each pattern it adds in AnnExclusions on the same
// ImageRepository, and removes exactly those, never one someone else set.

// AnnExclusions lists, on an ImageRepository, the exclusionList patterns
// autodeploy added (Exclusion JSON).
const AnnExclusions = "autodeploy.dev/exclusions"

// Exclusion is one pattern autodeploy added to an exclusionList.
type Exclusion struct {
	Pattern string    `json:"pattern"`
	Tag     string    `json:"tag"`
	Service string    `json:"service"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// TagPattern is the exclusionList pattern that matches exactly tag.
func TagPattern(tag string) string { return "^" + regexp.QuoteMeta(tag) + "$" }

// ParseExclusions reads AnnExclusions; garbage reads as none (autodeploy
// then removes nothing).
func ParseExclusions(u *unstructured.Unstructured) []Exclusion {
	var out []Exclusion
	if v := u.GetAnnotations()[AnnExclusions]; v != "" {
		if json.Unmarshal([]byte(v), &out) != nil {
			return nil
		}
	}
	return out
}

// conflicts paces the retries of a conditional write that found the object
// changed since it was read: client-go's default, 5 tries 10 ms apart
// (the 5 tries these writes always had).
var conflicts = retry.DefaultRetry

// Exclude adds TagPattern(e.Tag) to the exclusionList of ImageRepository
// repo, recorded as autodeploy's. added is false when the pattern was
// there already (someone else's, or an earlier run's): nothing changes.
// The write is conditional on the resourceVersion read, so an edit made
// in between is never overwritten.
//
// The list stays within Flux's limit (MaxExclusionList): when it is full,
// autodeploy's own oldest patterns go first (their tags were replaced by
// newer images long since); one someone else set is never removed, and a
// list full of those is an error that says so.
func Exclude(ctx context.Context, dc dynamic.Interface, api flux.API, repo flux.Ref, e Exclusion) (added bool, err error) {
	e.Pattern = TagPattern(e.Tag)
	full := false
	added, err = editExclusions(ctx, dc, api, repo, func(list []string, recs []Exclusion) ([]string, []Exclusion, bool) {
		if slices.Contains(list, e.Pattern) {
			return list, recs, false
		}
		slices.SortStableFunc(recs, func(a, b Exclusion) int { return a.At.Compare(b.At) })
		for len(list) >= MaxExclusionList && len(recs) > 0 {
			if i := slices.Index(list, recs[0].Pattern); i >= 0 {
				list = slices.Delete(list, i, i+1)
			}
			recs = recs[1:]
		}
		if full = len(list) >= MaxExclusionList; full {
			return list, recs, false
		}
		return append(list, e.Pattern), append(recs, e), true
	})
	if err == nil && full {
		return false, fmt.Errorf("the exclusionList of ImageRepository %s has Flux's maximum of %d patterns, none of them autodeploy's: remove some (kubectl edit imagerepository %s -n %s)", repo, MaxExclusionList, repo.Name, repo.Namespace)
	}
	return added, err
}

// MaxExclusionList is the most patterns an ImageRepository's
// spec.exclusionList holds: the CRD's maxItems (image-reflector-controller's
// api, `+kubebuilder:validation:MaxItems=25`); one more is refused with 422.
const MaxExclusionList = 25

// Unexclude removes the patterns autodeploy recorded for which drop is
// true, and only those; it returns the ones removed.
func Unexclude(ctx context.Context, dc dynamic.Interface, api flux.API, repo flux.Ref, drop func(Exclusion) bool) (removed []Exclusion, err error) {
	_, err = editExclusions(ctx, dc, api, repo, func(list []string, recs []Exclusion) ([]string, []Exclusion, bool) {
		removed = nil
		var keep []Exclusion
		for _, r := range recs {
			if drop(r) {
				removed = append(removed, r)
				// One occurrence: a copy someone added by hand stays.
				if i := slices.Index(list, r.Pattern); i >= 0 {
					list = slices.Delete(list, i, i+1)
				}
				continue
			}
			keep = append(keep, r)
		}
		return list, keep, len(removed) > 0
	})
	return removed, err
}

func editExclusions(ctx context.Context, dc dynamic.Interface, api flux.API, repo flux.Ref, edit func([]string, []Exclusion) ([]string, []Exclusion, bool)) (bool, error) {
	res := dc.Resource(api.Repositories()).Namespace(repo.Namespace)
	changed := false
	// The patch carries the resourceVersion read: a conflict reads again
	// and edits again.
	err := retry.RetryOnConflict(conflicts, func() error {
		changed = false
		u, err := res.Get(ctx, repo.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read ImageRepository %s: %w", repo, err)
		}
		list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
		list, recs, edited := edit(slices.Clone(list), ParseExclusions(u))
		if !edited {
			return nil
		}
		var rec any // null removes the annotation
		if len(recs) > 0 {
			b, _ := json.Marshal(recs)
			rec = string(b)
		}
		if list == nil {
			list = []string{}
		}
		patch, _ := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": u.GetResourceVersion(), "annotations": map[string]any{AnnExclusions: rec}},
			"spec":     map[string]any{"exclusionList": list},
		})
		if _, err = res.Patch(ctx, repo.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "autodeploy"}); err != nil {
			return fmt.Errorf("edit the exclusionList of ImageRepository %s: %w", repo, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// Rescan asks repo to scan now after its exclusionList changed, and waits
// within ctx (the caller's budget: a run's Flux wait, a command's bound)
// for the answer. The spec change alone makes Flux rescan; the request
// makes the wait for it explicit. answered is false when Flux did not
// answer; problems are the other failures.
func Rescan(ctx context.Context, dc dynamic.Interface, api flux.API, repo flux.Ref, now time.Time) (answered bool, problems []string) {
	answered = true
	for _, o := range flux.Reconcile(ctx, dc, api.Repositories(), []flux.Ref{repo}, flux.Token(now)) {
		if !o.OK {
			problems = append(problems, o.Problem)
			answered = answered && !o.NoAnswer
		}
	}
	return answered, problems
}
