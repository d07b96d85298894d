// Package image parses and compares container image references. The seed
// script compared a bare tag with a full reference and deployed "sha-abc"
// as an image name (ImagePullBackOff); here both sides are always
// normalised to registry/repository[:tag][@digest] before any comparison.
package image

import (
	"fmt"
	"regexp"
	"strings"
)

// Ref is a parsed image reference.
type Ref struct {
	Registry   string // e.g. docker.io, ghcr.io, registry.local:5000
	Repository string // e.g. library/nginx, team-mercurious/api-gateway
	Tag        string // empty when only a digest was given
	Digest     string // sha256:<hex>, or empty
}

const dockerHub = "docker.io"

var (
	// Lowercase path components separated by /, each with ., _, __ or -
	// separators, as the distribution reference grammar allows.
	pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE         = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE      = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$`)
	hostRE        = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$`)
)

// Parse parses s the way a container runtime does: a first component with a
// dot or a port, or "localhost", is a registry; otherwise the registry is
// Docker Hub and a one-component repository lives under library/. A
// reference without tag or digest means :latest.
func Parse(s string) (Ref, error) {
	orig := s
	if s == "" {
		return Ref{}, fmt.Errorf("empty image reference")
	}
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\n") {
		return Ref{}, fmt.Errorf("invalid image reference %q: contains whitespace", orig)
	}
	var r Ref
	if i := strings.Index(s, "@"); i >= 0 {
		r.Digest = s[i+1:]
		s = s[:i]
		if !digestRE.MatchString(r.Digest) {
			return Ref{}, fmt.Errorf("invalid image reference %q: bad digest %q", orig, r.Digest)
		}
	}
	// A colon after the last slash separates the tag; one before it belongs
	// to a registry port.
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		r.Tag = s[i+1:]
		s = s[:i]
		if !tagRE.MatchString(r.Tag) {
			return Ref{}, fmt.Errorf("invalid image reference %q: bad tag %q", orig, r.Tag)
		}
	}
	name := s
	if i := strings.Index(name, "/"); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.HasPrefix(first, "[") {
			r.Registry = strings.ToLower(first)
			name = name[i+1:]
			if !hostRE.MatchString(first) {
				return Ref{}, fmt.Errorf("invalid image reference %q: bad registry %q", orig, first)
			}
		}
	}
	if r.Registry == "" || r.Registry == "index.docker.io" || r.Registry == "registry-1.docker.io" {
		r.Registry = dockerHub
	}
	if name == "" {
		return Ref{}, fmt.Errorf("invalid image reference %q: no repository", orig)
	}
	for _, c := range strings.Split(name, "/") {
		if !pathComponent.MatchString(c) {
			return Ref{}, fmt.Errorf("invalid image reference %q: bad repository component %q (lowercase letters, digits and . _ - only)", orig, c)
		}
	}
	if r.Registry == dockerHub && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	r.Repository = name
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// Name is registry/repository, without tag or digest.
func (r Ref) Name() string { return r.Registry + "/" + r.Repository }

// String is the full normalised reference.
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Same reports whether a and b name the same image: the same repository,
// and the same digest when both have one, else the same tag. A digest pins
// content, so tag:1@sha256:a and tag:1@sha256:b differ (the tag moved),
// while tag:1 and tag:1@sha256:a are the same deployment target.
func Same(a, b Ref) bool {
	if a.Name() != b.Name() {
		return false
	}
	if a.Digest != "" && b.Digest != "" {
		return strings.EqualFold(a.Digest, b.Digest)
	}
	return a.Tag == b.Tag && a.Tag != ""
}

// SameString parses both references and compares them with Same; an
// unparsable reference is never the same as anything.
func SameString(a, b string) bool {
	ra, err := Parse(a)
	if err != nil {
		return false
	}
	rb, err := Parse(b)
	if err != nil {
		return false
	}
	return Same(ra, rb)
}

// Satisfies reports whether a container running current already runs what
// target asks for. Unlike Same it is not symmetric: a target pinned by
// digest (Flux's digestReflectionPolicy: app:main@sha256:...) over a
// current image without one is a deploy, because a mutable tag may have
// moved to a new build since the pods pulled it; a current image pinned by
// digest satisfies a target of the same tag without one (the target says
// nothing about content).
func Satisfies(current, target Ref) bool {
	if target.Digest != "" && current.Digest == "" {
		return false
	}
	return Same(current, target)
}
