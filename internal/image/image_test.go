package image

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "nginx", want: "docker.io/library/nginx:latest"},
		{in: "nginx:1.27", want: "docker.io/library/nginx:1.27"},
		{in: "docker.io/nginx:1.27", want: "docker.io/library/nginx:1.27"},
		{in: "index.docker.io/library/nginx:1.27", want: "docker.io/library/nginx:1.27"},
		{in: "bitnami/redis:7", want: "docker.io/bitnami/redis:7"},
		{in: "ghcr.io/team-mercurious/api-gateway:sha-1a2b3c4", want: "ghcr.io/team-mercurious/api-gateway:sha-1a2b3c4"},
		{in: "GHCR.io/team/app:v1", want: "ghcr.io/team/app:v1"},
		{in: "registry.local:5000/app:v1", want: "registry.local:5000/app:v1"},
		{in: "registry.local:5000/app", want: "registry.local:5000/app:latest"},
		{in: "localhost/app:dev", want: "localhost/app:dev"},
		{in: "localhost:5000/a/b/c:1", want: "localhost:5000/a/b/c:1"},
		{in: "[::1]:5000/app:1", want: "[::1]:5000/app:1"},
		{in: "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "docker.io/library/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{in: "ghcr.io/x/app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "ghcr.io/x/app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{in: "", wantErr: true},
		{in: "sha-", wantErr: true},
		{in: "ghcr.io/Team/app:v1", wantErr: true},
		{in: "app:bad tag", wantErr: true},
		{in: "app:", wantErr: true},
		{in: "app@sha256:xyz", wantErr: true},
		{in: "ghcr.io/", wantErr: true},
		{in: "a//b:1", wantErr: true},
		{in: " app:1", wantErr: true},
		{in: "app:" + string(make([]byte, 200)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSame(t *testing.T) {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	tests := []struct {
		a, b string
		want bool
	}{
		{"nginx:1", "docker.io/library/nginx:1", true},
		{"nginx", "nginx:latest", true},
		{"nginx:1", "nginx:2", false},
		{"ghcr.io/x/app:sha-1", "sha-1", false}, // the seed's bug: a bare tag is not an image
		{"ghcr.io/x/app:v1", "ghcr.io/y/app:v1", false},
		{"registry:5000/app:v1", "registry/app:v1", false},
		{"ghcr.io/x/app:v1@" + d1, "ghcr.io/x/app:v1", true},
		{"ghcr.io/x/app:v1@" + d1, "ghcr.io/x/app:v1@" + d2, false},
		{"ghcr.io/x/app@" + d1, "ghcr.io/x/app:v2@" + d1, true},
		{"ghcr.io/x/app@" + d1, "ghcr.io/x/app:v2", false},
		{"not valid!", "not valid!", false},
	}
	for _, tt := range tests {
		if got := SameString(tt.a, tt.b); got != tt.want {
			t.Errorf("SameString(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := SameString(tt.b, tt.a); got != tt.want {
			t.Errorf("SameString(%q, %q) = %v, want %v (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"nginx", "ghcr.io/x/y:1", "a:5000/b@sha256:00", "[::1]/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		// A normalised reference parses back to itself.
		r2, err := Parse(r.String())
		if err != nil || r2 != r {
			t.Fatalf("Parse(%q) = %q, reparse = %q, %v", s, r, r2, err)
		}
	})
}

func BenchmarkSameString(b *testing.B) {
	for b.Loop() {
		SameString("ghcr.io/team-mercurious/api-gateway:sha-1a2b3c4", "ghcr.io/team-mercurious/api-gateway:sha-5d6e7f8")
	}
}

// Satisfies is Same except that a target pinned by digest is never
// satisfied by a current image without one (a mutable tag may have moved).
func TestSatisfies(t *testing.T) {
	a, b := "@sha256:"+strings.Repeat("a", 64), "@sha256:"+strings.Repeat("b", 64)
	tests := []struct {
		current, target string
		want            bool
	}{
		{"app:main", "app:main", true},
		{"app:main", "app:main" + a, false}, // digestReflectionPolicy: a new build of main
		{"app:main" + a, "app:main", true},  // the target says nothing about content
		{"app:main" + a, "app:main" + a, true},
		{"app:main" + a, "app:main" + b, false},
		{"app:v1" + a, "app:v2" + a, true}, // same content under another tag
		{"app:v1", "other:v1", false},
	}
	for _, tt := range tests {
		c, _ := Parse(tt.current)
		g, _ := Parse(tt.target)
		if got := Satisfies(c, g); got != tt.want {
			t.Errorf("Satisfies(%s, %s) = %v, want %v", tt.current, tt.target, got, tt.want)
		}
	}
}
