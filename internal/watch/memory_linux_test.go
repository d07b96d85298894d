//go:build linux

package watch

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMapping(t *testing.T) {
	for _, tc := range []struct {
		line string
		want mapping
		ok   bool
	}{
		{"00400000-01a89000 r-xp 00000000 fe:00 10706953   /usr/bin/autodeploy", mapping{start: 0x400000, end: 0x1a89000, dev: unix.Mkdev(0xfe, 0), inode: 10706953}, true},
		{"03406000-0349d000 rw-p 03006000 fe:01 10706953   /usr/bin/autodeploy (deleted)", mapping{start: 0x3406000, end: 0x349d000, offset: 0x3006000, dev: unix.Mkdev(0xfe, 1), inode: 10706953, writable: true}, true},
		{"7ffd1000-7ffd3000 r--p 00000000 00:00 0   [vvar]", mapping{start: 0x7ffd1000, end: 0x7ffd3000}, true},
		{"garbage", mapping{}, false},
		{"2000-1000 r--p 00000000 00:00 0", mapping{}, false},
		{"1000-2000 r--p 00000000 zz 0", mapping{}, false},
	} {
		got, ok := parseMapping(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSplitAround(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start, end uint64
		skip       [][2]uint64
		want       [][2]uint64
	}{
		{"nothing to skip", 0, 100, nil, [][2]uint64{{0, 100}}},
		{"skip outside", 0, 100, [][2]uint64{{100, 200}}, [][2]uint64{{0, 100}}},
		{"skip inside", 0, 100, [][2]uint64{{20, 30}}, [][2]uint64{{0, 20}, {30, 100}}},
		{"skip the head", 0, 100, [][2]uint64{{0, 30}}, [][2]uint64{{30, 100}}},
		{"skip all", 10, 100, [][2]uint64{{0, 200}}, nil},
		{"two skips", 0, 100, [][2]uint64{{10, 20}, {50, 60}}, [][2]uint64{{0, 10}, {20, 50}, {60, 100}}},
	} {
		if got := splitAround(tc.start, tc.end, tc.skip); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: splitAround = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The test binary's code pages touched to start are given back, and the
// process goes on running code from them.
func TestReleaseIdleGivesBackTheExecutablesPages(t *testing.T) {
	before := rssFile(t)
	if err := ReleaseIdle(); err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if after >= before {
		t.Fatalf("RssFile %d kB before ReleaseIdle, %d kB after: nothing given back", before, after)
	}
	t.Logf("RssFile %d kB -> %d kB", before, after)
	// Code and read-only data come back from the page cache.
	if got, want := strings.Repeat("ab", 2), "abab"; got != want {
		t.Fatal(got)
	}
}

func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
