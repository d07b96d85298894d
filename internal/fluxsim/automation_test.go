package fluxsim

import "testing"

func TestSetImages(t *testing.T) {
	images := map[string]string{
		"flux-system:api": "ghcr.io/org/api:sha-bbb",
		"apps:web":        "ghcr.io/org/web:2.0.0",
	}
	tests := []struct {
		name, in, want string
		n              int
	}{
		{
			name: "full image",
			in:   "      - name: api\n        image: ghcr.io/org/api:sha-aaa # {\"$imagepolicy\": \"flux-system:api\"}\n",
			want: "      - name: api\n        image: ghcr.io/org/api:sha-bbb # {\"$imagepolicy\": \"flux-system:api\"}\n",
			n:    1,
		},
		{
			name: "list item key",
			in:   "  - image: ghcr.io/org/api:sha-aaa # {\"$imagepolicy\": \"flux-system:api\"}",
			want: "  - image: ghcr.io/org/api:sha-bbb # {\"$imagepolicy\": \"flux-system:api\"}",
			n:    1,
		},
		{
			name: "tag and name variants, quotes kept",
			in:   "tag: \"1.0.0\" # {\"$imagepolicy\": \"apps:web:tag\"}\nrepository: ghcr.io/old/web # {\"$imagepolicy\": \"apps:web:name\"}\n",
			want: "tag: \"2.0.0\" # {\"$imagepolicy\": \"apps:web:tag\"}\nrepository: ghcr.io/org/web # {\"$imagepolicy\": \"apps:web:name\"}\n",
			n:    2,
		},
		{
			name: "already current",
			in:   "image: ghcr.io/org/web:2.0.0 # {\"$imagepolicy\": \"apps:web\"}\n",
			want: "image: ghcr.io/org/web:2.0.0 # {\"$imagepolicy\": \"apps:web\"}\n",
		},
		{
			name: "unknown policy or namespace left alone",
			in:   "image: x:1 # {\"$imagepolicy\": \"other:api\"}\nimage: y:1 # {\"$imagepolicy\": \"flux-system:nope\"}\n",
			want: "image: x:1 # {\"$imagepolicy\": \"other:api\"}\nimage: y:1 # {\"$imagepolicy\": \"flux-system:nope\"}\n",
		},
		{
			name: "no marker",
			in:   "image: ghcr.io/org/api:sha-aaa # pinned\n",
			want: "image: ghcr.io/org/api:sha-aaa # pinned\n",
		},
		{
			name: "CRLF kept",
			in:   "image: a:1 # {\"$imagepolicy\": \"apps:web\"}\r\nx: 1\r\n",
			want: "image: ghcr.io/org/web:2.0.0 # {\"$imagepolicy\": \"apps:web\"}\r\nx: 1\r\n",
			n:    1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := SetImages(tt.in, images)
			if got != tt.want || n != tt.n {
				t.Errorf("SetImages:\n got %q (%d)\nwant %q (%d)", got, n, tt.want, tt.n)
			}
		})
	}
}

func TestSplitImage(t *testing.T) {
	tests := []struct{ in, name, tag string }{
		{"ghcr.io/org/api:sha-1", "ghcr.io/org/api", "sha-1"},
		{"localhost:5000/api:1.0", "localhost:5000/api", "1.0"},
		{"localhost:5000/api", "localhost:5000/api", ""},
		{"ghcr.io/org/api:1.0@sha256:abc", "ghcr.io/org/api", "1.0@sha256:abc"},
	}
	for _, tt := range tests {
		if name, tag := splitImage(tt.in); name != tt.name || tag != tt.tag {
			t.Errorf("splitImage(%q) = %q, %q; want %q, %q", tt.in, name, tag, tt.name, tt.tag)
		}
	}
}
