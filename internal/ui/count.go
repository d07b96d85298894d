package ui

import "strconv"

// Count is n and its noun, singular for one ("1 line", "2 lines", "0
// lines"): messages counted lines, services and ImagePolicies as "1 lines"
// (issue 18, fifth pass). The plural is given, as English's are irregular
// (ImagePolicies).
func Count[N ~int | ~int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(int64(n), 10) + " " + many
}
