package flux

import (
	"regexp"
	"strconv"

	"github.com/Masterminds/semver/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

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
