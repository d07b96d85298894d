package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/Masterminds/semver/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
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

// maxConflicts bounds the retries of a conditional write that found the
// object changed since it was read.
const maxConflicts = 5

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
func Exclude(ctx context.Context, dc dynamic.Interface, api API, repo Ref, e Exclusion) (added bool, err error) {
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
func Unexclude(ctx context.Context, dc dynamic.Interface, api API, repo Ref, drop func(Exclusion) bool) (removed []Exclusion, err error) {
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

func editExclusions(ctx context.Context, dc dynamic.Interface, api API, repo Ref, edit func([]string, []Exclusion) ([]string, []Exclusion, bool)) (bool, error) {
	res := dc.Resource(api.Repositories()).Namespace(repo.Namespace)
	for attempt := 1; ; attempt++ {
		u, err := res.Get(ctx, repo.Name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("read ImageRepository %s: %w", repo, err)
		}
		list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
		list, recs, changed := edit(slices.Clone(list), ParseExclusions(u))
		if !changed {
			return false, nil
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
		_, err = res.Patch(ctx, repo.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "autodeploy"})
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("edit the exclusionList of ImageRepository %s: %w", repo, err)
		}
		return true, nil
	}
}

// Order is how an ImagePolicy ranks tags (spec.policy, after
// spec.filterTags extracts the part it compares).
type Order struct {
	Kind       string // alphabetical, numerical, semver; "" unknown
	Descending bool   // order: desc (alphabetical, numerical)
	Range      string // semver range, informational
	Pattern    string // filterTags.pattern
	Extract    string // filterTags.extract
}

// ParseOrder reads spec.policy and spec.filterTags of an ImagePolicy.
func ParseOrder(u *unstructured.Unstructured) Order {
	var o Order
	o.Pattern, _, _ = unstructured.NestedString(u.Object, "spec", "filterTags", "pattern")
	o.Extract, _, _ = unstructured.NestedString(u.Object, "spec", "filterTags", "extract")
	for _, kind := range []string{"alphabetical", "numerical", "semver"} {
		m, found, _ := unstructured.NestedMap(u.Object, "spec", "policy", kind)
		if !found {
			continue
		}
		o.Kind = kind
		ord, _ := m["order"].(string)
		o.Descending = ord == "desc"
		o.Range, _ = m["range"].(string)
	}
	return o
}

// Prefers says whether the policy ranks tag a above tag b, as
// image-reflector-controller does (fluxcd.io/flux/components/image/imagepolicies/#policy):
// a true answer means that removing b's exclusion cannot make the policy
// select b over a. ok is false when it cannot be told (an unknown policy,
// a tag the filter does not match): the caller keeps the exclusion.
func (o Order) Prefers(a, b string) (prefers, ok bool) {
	ea, oka := o.extract(a)
	eb, okb := o.extract(b)
	switch {
	case !oka:
		return false, false
	case !okb:
		// filterTags drops b: the policy can never select it, excluded
		// or not.
		return true, o.Kind != ""
	}
	switch o.Kind {
	case "alphabetical":
		if o.Descending {
			return ea < eb, true
		}
		return ea > eb, true
	case "numerical":
		fa, erra := strconv.ParseFloat(ea, 64)
		fb, errb := strconv.ParseFloat(eb, 64)
		if erra != nil || errb != nil {
			return false, false
		}
		if o.Descending {
			return fa < fb, true
		}
		return fa > fb, true
	case "semver":
		// Masterminds/semver, as image-reflector-controller parses tags: it
		// takes "1.2" and "v2" too (strict SemVer 2.0 does not).
		va, erra := semver.NewVersion(ea)
		vb, errb := semver.NewVersion(eb)
		if erra != nil || errb != nil {
			return false, false
		}
		return va.GreaterThan(vb), true
	}
	return false, false
}

// extract applies filterTags as the controller does: a tag that does not
// match the pattern is filtered out; extract (e.g. "$ts") replaces the
// match with the template expanded from the groups (image-reflector-controller's
// RegexFilter: FindStringSubmatchIndex, then ExpandString).
func (o Order) extract(tag string) (string, bool) {
	if o.Pattern == "" {
		return tag, true
	}
	re, err := regexp.Compile(o.Pattern)
	if err != nil {
		return "", false
	}
	m := re.FindStringSubmatchIndex(tag)
	if m == nil {
		return "", false
	}
	if o.Extract == "" {
		return tag, true
	}
	return string(re.ExpandString(nil, o.Extract, tag, m)), true
}
