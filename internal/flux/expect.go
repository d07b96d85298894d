package flux

import (
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Scan is what an ImageRepository's status says about its last scan's
// tags (status.lastScanResult).
type Scan struct {
	// TagCount is how many tags the scan kept (after spec.exclusionList).
	TagCount int
	// LatestTags are the greatest of them in descending string order, at
	// most 10 (image-reflector-controller's sortTagsAndGetLatestTags,
	// whatever the policies' order); v1beta2 and v1 only.
	LatestTags []string
}

// ParseScan reads status.lastScanResult of an ImageRepository.
func ParseScan(u *unstructured.Unstructured) Scan {
	n, _, _ := unstructured.NestedInt64(u.Object, "status", "lastScanResult", "tagCount")
	tags, _, _ := unstructured.NestedStringSlice(u.Object, "status", "lastScanResult", "latestTags")
	return Scan{TagCount: int(n), LatestTags: tags}
}

// Expect returns the tag the policy must select from scan, as
// image-reflector-controller's policers do (internal/policy: RegexFilter,
// then Alphabetical, Numerical or SemVer over the extracted values, mapped
// back to the tag), and whether the scan alone tells it. It tells when
// latestTags lists every tag (tagCount <= 10), or, for an ascending
// alphabetical policy that extracts nothing, when a listed tag passes the
// filter: every tag left out sorts below every listed one. It does not
// tell for an unknown policy, an invalid pattern or range, no tag passing,
// a numerical value that does not parse (the controller fails the
// policy), or two tags that rank the same (the controller's choice between
// them comes from a map's order).
func (o Order) Expect(s Scan) (tag string, ok bool) {
	if o.Kind == "" || len(s.LatestTags) == 0 {
		return "", false
	}
	if s.TagCount > len(s.LatestTags) && (o.Kind != "alphabetical" || o.Descending || o.Extract != "") {
		return "", false
	}
	var constraint *semver.Constraints
	if o.Kind == "semver" {
		c, err := semver.NewConstraint(o.Range)
		if err != nil {
			return "", false
		}
		constraint = c
	}
	type cand struct {
		tag, val string
		num      float64
		ver      *semver.Version
	}
	var best *cand
	tie := false
	for _, t := range s.LatestTags {
		val, pass := o.extract(t)
		if !pass {
			continue
		}
		c := cand{tag: t, val: val}
		var cmp int // > 0: c ranks above best
		switch o.Kind {
		case "alphabetical":
			if best != nil {
				cmp = strings.Compare(c.val, best.val)
			}
			if o.Descending {
				cmp = -cmp
			}
		case "numerical":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return "", false
			}
			c.num = f
			if best != nil {
				cmp = compareFloat(c.num, best.num)
			}
			if o.Descending {
				cmp = -cmp
			}
		case "semver":
			v, err := semver.NewVersion(val)
			if err != nil {
				continue
			}
			// The controller parses with fluxcd/pkg/version; where the
			// lenient and the strict parser disagree (1.2, 01.2.3) the
			// choice is not told here.
			if _, err := semver.StrictNewVersion(strings.TrimPrefix(strings.TrimPrefix(val, "v"), "V")); err != nil {
				return "", false
			}
			if !constraint.Check(v) {
				continue
			}
			c.ver = v
			if best != nil {
				cmp = v.Compare(best.ver)
			}
		default:
			return "", false
		}
		switch {
		case best == nil || cmp > 0:
			best, tie = &c, false
		case cmp == 0:
			tie = true
		}
	}
	if best == nil || tie {
		return "", false
	}
	return best.tag, true
}

func compareFloat(a, b float64) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	}
	return 0
}

// selectedTag is the tag an ImagePolicy selects: status.latestRef.tag
// (v1beta2, v1), or the tag of status.latestImage (v1beta1).
func selectedTag(u *unstructured.Unstructured) string {
	if tag, _, _ := unstructured.NestedString(u.Object, "status", "latestRef", "tag"); tag != "" {
		return tag
	}
	img, _, _ := unstructured.NestedString(u.Object, "status", "latestImage")
	if i := strings.LastIndex(img, "@"); i >= 0 {
		img = img[:i]
	}
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		return img[i+1:]
	}
	return ""
}
