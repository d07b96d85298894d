package flux

import "testing"

// Expect plays image-reflector-controller's policers over latestTags, and
// tells only what the scan alone decides.
func TestOrderExpect(t *testing.T) {
	sha := Order{Kind: "alphabetical", Pattern: "^sha-[a-f0-9]+$"}
	tests := []struct {
		name   string
		o      Order
		s      Scan
		tag    string
		ok     bool
		reason string
	}{
		{"alphabetical asc, every tag listed", sha, Scan{3, []string{"sha-ccc", "sha-bbb", "sha-aaa"}}, "sha-ccc", true, ""},
		{"filter drops tags", sha, Scan{3, []string{"v9", "sha-bbb", "latest"}}, "sha-bbb", true, ""},
		{"alphabetical asc, more tags than listed", sha, Scan{250, []string{"sha-fff", "sha-eee"}}, "sha-fff", true, "unlisted tags sort below every listed one"},
		{"alphabetical asc, more tags, none listed passes", sha, Scan{250, []string{"v9", "v8"}}, "", false, "the newest sha- tag may be unlisted"},
		{"alphabetical desc, more tags", Order{Kind: "alphabetical", Descending: true}, Scan{20, []string{"b", "a"}}, "", false, "the smallest may be unlisted"},
		{"alphabetical desc, every tag", Order{Kind: "alphabetical", Descending: true}, Scan{2, []string{"b", "a"}}, "a", true, ""},
		{"extract, more tags", Order{Kind: "alphabetical", Pattern: `^main-[a-f0-9]+-(?P<ts>\d+)$`, Extract: "$ts"}, Scan{20, []string{"main-fff-1", "main-aaa-9"}}, "", false, "extracted values do not follow the tags' order"},
		{"extract, every tag", Order{Kind: "alphabetical", Pattern: `^main-[a-f0-9]+-(?P<ts>\d+)$`, Extract: "$ts"}, Scan{2, []string{"main-fff-1", "main-aaa-9"}}, "main-aaa-9", true, ""},
		{"extract tie", Order{Kind: "alphabetical", Pattern: `^(?P<ts>\d+)-.*$`, Extract: "$ts"}, Scan{2, []string{"5-b", "5-a"}}, "", false, "the controller's choice comes from a map"},
		{"numerical asc", Order{Kind: "numerical"}, Scan{3, []string{"9", "10", "1"}}, "10", true, ""},
		{"numerical desc", Order{Kind: "numerical", Descending: true}, Scan{3, []string{"9", "10", "1"}}, "1", true, ""},
		{"numerical unparsable", Order{Kind: "numerical"}, Scan{2, []string{"9", "x"}}, "", false, "the controller fails the policy"},
		{"numerical, more tags", Order{Kind: "numerical"}, Scan{11, []string{"9", "10"}}, "", false, ""},
		{"semver range", Order{Kind: "semver", Range: ">=1.0.0 <2.0.0"}, Scan{4, []string{"v2.0.0", "v1.10.0", "v1.9.0", "latest"}}, "v1.10.0", true, ""},
		{"semver, nothing in range", Order{Kind: "semver", Range: ">=3.0.0"}, Scan{2, []string{"2.0.0", "1.0.0"}}, "", false, ""},
		{"semver tie", Order{Kind: "semver", Range: "*"}, Scan{2, []string{"v1.0.0", "1.0.0"}}, "", false, "same version, two tags"},
		{"semver lenient only", Order{Kind: "semver", Range: "*"}, Scan{2, []string{"1.2", "1.0.0"}}, "", false, "parsers disagree"},
		{"semver, more tags", Order{Kind: "semver", Range: "*"}, Scan{12, []string{"9.0.0"}}, "", false, ""},
		{"unknown policy", Order{}, Scan{1, []string{"a"}}, "", false, ""},
		{"no latestTags (v1beta1)", sha, Scan{3, nil}, "", false, ""},
		{"invalid pattern", Order{Kind: "alphabetical", Pattern: "("}, Scan{1, []string{"a"}}, "", false, ""},
	}
	for _, tc := range tests {
		tag, ok := tc.o.Expect(tc.s)
		if tag != tc.tag || ok != tc.ok {
			t.Errorf("%s: Expect = %q, %v; want %q, %v %s", tc.name, tag, ok, tc.tag, tc.ok, tc.reason)
		}
	}
}
