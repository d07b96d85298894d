package fluxsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var branchRef = plumbing.NewBranchReferenceName(Branch)

// repo is the git server: a bare repository on disk behind an http://
// URL on loopback.
type repo struct {
	dir, url string
	// mu makes each write (clone, commit, push) and each read one step, so
	// that a push never races another: with a real server the loser's push
	// would be refused as non-fast-forward and retried.
	mu sync.Mutex
}

// initRepo creates the bare repository in dir with files as its first
// commit on main, and serves it over HTTP until ctx ends.
func initRepo(ctx context.Context, dir string, files map[string]string) (*repo, error) {
	bare, err := filepath.Abs(filepath.Join(dir, "flux-system.git"))
	if err != nil {
		return nil, err
	}
	if _, err := git.PlainInitWithOptions(bare, &git.PlainInitOptions{Bare: true, InitOptions: git.InitOptions{DefaultBranch: branchRef}}); err != nil {
		return nil, fmt.Errorf("init %s: %w", bare, err)
	}
	url, err := serveGit(ctx, bare)
	if err != nil {
		return nil, err
	}
	r := &repo{dir: bare, url: url}
	// An empty repository has nothing to clone: the first commit is made
	// in a new repository and pushed, as `git init; git push` would.
	w, err := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: branchRef})
	if err != nil {
		return nil, err
	}
	if _, err := w.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.url}}); err != nil {
		return nil, err
	}
	if _, _, err := r.commitIn(ctx, w, files, "Initial commit", person(), nil); err != nil {
		return nil, err
	}
	return r, nil
}

func person() object.Signature {
	return object.Signature{Name: "Dev Eloper", Email: "dev@example.com", When: time.Now()}
}

// commit clones main, writes files, commits them as sig and pushes. With
// nothing changed it commits nothing and returns the head. refuse, if it
// returns an error, is asked before pushing and refuses the push.
func (r *repo) commit(ctx context.Context, files map[string]string, msg string, sig object.Signature, refuse func() error) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, err := r.clone(ctx)
	if err != nil {
		return "", false, err
	}
	return r.commitLocked(ctx, w, files, msg, sig, refuse)
}

// commitIn is commit on an existing working repository.
func (r *repo) commitIn(ctx context.Context, w *git.Repository, files map[string]string, msg string, sig object.Signature, refuse func() error) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitLocked(ctx, w, files, msg, sig, refuse)
}

func (r *repo) commitLocked(ctx context.Context, w *git.Repository, files map[string]string, msg string, sig object.Signature, refuse func() error) (string, bool, error) {
	wt, err := w.Worktree()
	if err != nil {
		return "", false, err
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if err := util.WriteFile(wt.Filesystem, p, []byte(files[p]), 0o644); err != nil {
			return "", false, fmt.Errorf("write %s: %w", p, err)
		}
		if _, err := wt.Add(p); err != nil {
			return "", false, fmt.Errorf("git add %s: %w", p, err)
		}
	}
	st, err := wt.Status()
	if err != nil {
		return "", false, err
	}
	if st.IsClean() {
		h, err := w.Head()
		if err != nil {
			return "", false, err
		}
		return h.Hash().String(), false, nil
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &sig})
	if err != nil {
		return "", false, fmt.Errorf("git commit: %w", err)
	}
	if refuse != nil {
		if err := refuse(); err != nil {
			return "", false, err
		}
	}
	spec := config.RefSpec(branchRef + ":" + branchRef)
	if err := w.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}}); err != nil {
		return "", false, fmt.Errorf("git push %s: %w", r.url, err)
	}
	return h.String(), true, nil
}

// clone checks out main in memory, as the automation does into a
// temporary directory.
func (r *repo) clone(ctx context.Context) (*git.Repository, error) {
	w, err := git.CloneContext(ctx, memory.NewStorage(), memfs.New(), &git.CloneOptions{URL: r.url, ReferenceName: branchRef, SingleBranch: true})
	if err != nil {
		return nil, fmt.Errorf("git clone %s: %w", r.url, err)
	}
	return w, nil
}

// head returns the hash at the head of main.
func (r *repo) head() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := git.PlainOpen(r.dir)
	if err != nil {
		return "", err
	}
	ref, err := b.Reference(branchRef, true)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", branchRef, err)
	}
	return ref.Hash().String(), nil
}

// file returns the content of p at the head of main.
func (r *repo) file(p string) (string, error) {
	h, err := r.head()
	if err != nil {
		return "", err
	}
	files, err := r.tree(h)
	if err != nil {
		return "", err
	}
	c, ok := files[cleanRepoPath(p)]
	if !ok {
		return "", fmt.Errorf("%s: not in commit %s", p, h)
	}
	return c, nil
}

// tree returns every file of commit hash: path -> content.
func (r *repo) tree(hash string) (map[string]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := git.PlainOpen(r.dir)
	if err != nil {
		return nil, err
	}
	c, err := b.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", hash, err)
	}
	return commitFiles(c)
}

// commitFiles returns every file of commit c: path -> content.
func commitFiles(c *object.Commit) (map[string]string, error) {
	t, err := c.Tree()
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	err = t.Files().ForEach(func(f *object.File) error {
		rd, err := f.Reader()
		if err != nil {
			return err
		}
		defer rd.Close()
		b, err := io.ReadAll(rd)
		files[f.Name] = string(b)
		return err
	})
	return files, err
}

// cleanRepoPath turns "./apps/" into "apps" and "./" into ".".
func cleanRepoPath(p string) string { return path.Clean(strings.TrimPrefix(p, "/")) }

// under reports whether file p is inside directory dir (both clean).
func under(dir, p string) bool { return dir == "." || strings.HasPrefix(p, dir+"/") }

// fetch plays one source-controller reconcile of the GitRepository: it
// resolves the head of the branch and, for a new revision, stores an
// artifact and records it in status.artifact. It reports whether the
// artifact revision changed. token is the reconcile request answered.
func (g *GitOps) fetch(ctx context.Context, token string) (bool, error) {
	g.srcMu.Lock()
	defer g.srcMu.Unlock()
	obj, err := g.dc.Resource(GitRepositoryGVR).Namespace(g.o.Namespace).Get(ctx, GitRepositoryName, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("read GitRepository: %w", err)
	}
	gen := obj.GetGeneration()
	g.acted("source", token, gen)
	if suspended(obj) {
		return false, nil
	}
	hash, err := g.repo.head()
	if err != nil {
		return false, err
	}
	rev := RevisionOf(hash)
	old, _, _ := unstructured.NestedString(obj.Object, "status", "artifact", "revision")
	og, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	handled, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	if rev == old && og == gen && (token == "" || token == handled) {
		// Nothing changed: the controller's patch helper writes nothing.
		return false, nil
	}
	status := map[string]any{"observedGeneration": gen}
	if token != "" {
		status["lastHandledReconcileAt"] = token
	}
	if rev != old {
		art, err := g.artifact(hash)
		if err != nil {
			return false, err
		}
		status["artifact"] = art
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	msg := fmt.Sprintf("stored artifact for revision '%s'", rev)
	status["conditions"] = setConditions(conds,
		condition("ArtifactInStorage", metav1.ConditionTrue, "Succeeded", msg, gen),
		condition("Ready", metav1.ConditionTrue, "Succeeded", msg, gen))
	if err := g.patchStatus(ctx, GitRepositoryGVR, GitRepositoryName, "source-controller", status); err != nil {
		return false, err
	}
	return rev != old, nil
}

// artifact describes the artifact source-controller would store for
// commit hash: its storage path and URL, and a digest and size of its
// content. The real digest is of the tar.gz; here it is a SHA-256 over the
// commit's files (path and content, in path order), which changes exactly
// when the content does.
func (g *GitOps) artifact(hash string) (map[string]any, error) {
	files, err := g.repo.tree(hash)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	size := 0
	for _, p := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(sum, "%s\x00%s\x00", p, files[p])
		size += len(files[p])
	}
	p := fmt.Sprintf("gitrepository/%s/%s/%s.tar.gz", g.o.Namespace, GitRepositoryName, hash)
	return map[string]any{
		"revision":       RevisionOf(hash),
		"digest":         "sha256:" + hex.EncodeToString(sum.Sum(nil)),
		"path":           p,
		"url":            "http://source-controller.flux-system.svc.cluster.local./" + p,
		"size":           int64(size),
		"lastUpdateTime": time.Now().UTC().Format(time.RFC3339),
	}, nil
}

// artifactHash returns the commit of an artifact revision.
func artifactHash(rev string) (string, error) {
	_, h, ok := strings.Cut(rev, "@sha1:")
	if !ok {
		return "", errors.New("artifact revision " + rev + " is not <branch>@sha1:<hash>")
	}
	return h, nil
}

func suspended(obj *unstructured.Unstructured) bool {
	s, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend")
	return s
}
