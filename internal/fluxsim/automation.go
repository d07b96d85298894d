package fluxsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// runAutomation plays one image-automation-controller reconcile of the
// ImageUpdateAutomation (ImageUpdateAutomationReconciler.reconcile in
// internal/controller/imageupdateautomation_controller.go): list the
// policies of its namespace that spec.policySelector matches and that
// have selected an image, check out the
// branch, rewrite the setters under spec.update.path, and commit and push
// only if a file changed. token is the reconcile request answered.
func (g *GitOps) runAutomation(ctx context.Context, token string) error {
	g.autoMu.Lock()
	defer g.autoMu.Unlock()
	gvr := g.automationGVR()
	obj, err := g.dc.Resource(gvr).Namespace(g.o.Namespace).Get(ctx, AutomationName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read ImageUpdateAutomation: %w", err)
	}
	gen := obj.GetGeneration()
	g.acted("automation", token, gen)
	if suspended(obj) {
		// "reconciliation is suspended for this object": the controller
		// returns before it writes anything.
		return nil
	}
	start := time.Now()
	status := map[string]any{"lastAutomationRunTime": start.UTC().Format(time.RFC3339)}
	if token != "" {
		status["lastHandledReconcileAt"] = token
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	observed := map[string]any{} // policy -> {name, tag}
	finish := func(cond map[string]any) error {
		if cond["status"] == string(metav1.ConditionTrue) {
			// Observations are persisted on success only, replacing the
			// last ones (the controller's patch helper writes the whole
			// map): a merge patch would keep a policy no longer applied.
			old, _, _ := unstructured.NestedMap(obj.Object, "status", "observedPolicies")
			written := maps.Clone(observed)
			for name := range old {
				if _, ok := written[name]; !ok {
					written[name] = nil
				}
			}
			status["observedGeneration"] = gen
			status["observedPolicies"] = written
		}
		status["conditions"] = deleteCondition(setConditions(conds, cond), "Reconciling")
		return g.patchStatus(ctx, gvr, AutomationName, "image-automation-controller", status)
	}
	// getPolicies lists the namespace's policies through
	// spec.policySelector (every one without it). A selector that does not
	// parse fails the reconcile before any git work; the condition's
	// reason is the stand-in's own (not checked against the controller).
	a := flux.ParseAutomation(obj)
	if a.SelectorError != "" {
		msg := "failed to get policies: " + a.SelectorError
		if err := finish(condition("Ready", metav1.ConditionFalse, "InvalidPolicySelector", msg, gen)); err != nil {
			return err
		}
		return &StatusError{Object: "ImageUpdateAutomation " + g.o.Namespace + "/" + AutomationName, Reason: "InvalidPolicySelector", Err: errors.New(msg)}
	}
	opts := metav1.ListOptions{}
	if a.PolicySelector != nil {
		opts.LabelSelector = a.PolicySelector.String()
	}
	list, err := g.dc.Resource(g.o.ImageVersion.GVR("imagepolicies")).Namespace(g.o.Namespace).List(ctx, opts)
	if err != nil {
		return fmt.Errorf("list ImagePolicies: %w", err)
	}
	images := map[string]string{} // "namespace:name" -> selected image
	for i := range list.Items {
		p := flux.ParsePolicy(&list.Items[i])
		if p.Latest == "" {
			continue // getPolicies ignores policies without a latest image
		}
		images[p.Namespace+":"+p.Name] = p.Latest
		// ImageRef{name, tag, digest}: the digest of a policy with
		// digestReflectionPolicy apart from its tag, as the controller
		// writes it (image-automation-controller's api: observedPolicies).
		name, tag := splitImage(p.Latest)
		ref := map[string]any{"name": name, "tag": tag}
		if at := strings.Index(tag, "@"); at >= 0 {
			ref["tag"], ref["digest"] = tag[:at], tag[at+1:]
		}
		observed[p.Name] = ref
	}
	g.repo.mu.Lock()
	defer g.repo.mu.Unlock()
	w, err := g.repo.clone(ctx)
	if err != nil {
		msg := "failed to checkout source: " + err.Error()
		if err := finish(condition("Ready", metav1.ConditionFalse, "GitOperationFailed", msg, gen)); err != nil {
			return err
		}
		return &StatusError{Object: "ImageUpdateAutomation " + g.o.Namespace + "/" + AutomationName, Reason: "GitOperationFailed", Err: errors.New(msg)}
	}
	head, err := w.Head()
	if err != nil {
		return err
	}
	c, err := w.CommitObject(head.Hash())
	if err != nil {
		return err
	}
	files, err := commitFiles(c)
	if err != nil {
		return err
	}
	dir := cleanRepoPath(g.o.Path)
	changed := map[string]string{}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if !under(dir, p) || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			continue
		}
		if out, n := SetImages(files[p], images); n > 0 {
			changed[p] = out
		}
	}
	if len(changed) == 0 {
		// Nothing to update: the controller drops its Ready condition and
		// the result finalizer writes Ready=True "repository up-to-date".
		status["observedSourceRevision"] = RevisionOf(head.Hash().String())
		return finish(condition("Ready", metav1.ConditionTrue, "Succeeded", "repository up-to-date", gen))
	}
	sig := object.Signature{Name: AutomationAuthor, Email: AutomationEmail, When: time.Now()}
	hash, _, err := g.repo.commitLocked(ctx, w, changed, AutomationMessage, sig, g.refused)
	if err != nil {
		// CommitAndPush's error, as the controller reports it.
		msg := "failed to update source: " + err.Error()
		if err := finish(condition("Ready", metav1.ConditionFalse, "GitOperationFailed", msg, gen)); err != nil {
			return err
		}
		return &StatusError{Object: "ImageUpdateAutomation " + g.o.Namespace + "/" + AutomationName, Reason: "GitOperationFailed", Err: errors.New(msg)}
	}
	status["observedSourceRevision"] = RevisionOf(hash)
	status["lastPushCommit"] = hash
	status["lastPushTime"] = time.Now().UTC().Format(time.RFC3339)
	return finish(condition("Ready", metav1.ConditionTrue, "Succeeded", "repository up-to-date", gen))
}

// refused returns the error RefusePush set.
func (g *GitOps) refused() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refuse
}

// setterMarker matches a line ending in an image policy setter, as the
// image automation guide documents it
// (fluxcd.io/flux/guides/image-update/#configure-image-updates):
//
//	image: ghcr.io/org/app:1.0.0 # {"$imagepolicy": "flux-system:app"}
//	tag: 1.0.0 # {"$imagepolicy": "flux-system:app:tag"}
//	repository: ghcr.io/org/app # {"$imagepolicy": "flux-system:app:name"}
//
// Groups: 1 the key and separator, 2 the value (maybe quoted), 3 the
// space and comment up to the marker, 4 the policy reference.
var setterMarker = regexp.MustCompile(`^(\s*(?:-\s+)?[^\s#:][^#:]*:\s+)("[^"]*"|'[^']*'|[^\s#"']\S*)(\s+#\s*)\{\s*"\$imagepolicy"\s*:\s*"([^"]+)"\s*\}\s*$`)

// SetImages rewrites the setter markers in a YAML document: each marker
// naming a policy in images ("namespace:name" -> "name:tag") gets the
// policy's image, or its tag or name for the ":tag" and ":name" variants.
// It returns the new content and how many values changed.
func SetImages(content string, images map[string]string) (string, int) {
	lines := strings.SplitAfter(content, "\n")
	n := 0
	for i, line := range lines {
		body := strings.TrimRight(line, "\r\n")
		eol := line[len(body):]
		m := setterMarker.FindStringSubmatchIndex(body)
		if m == nil {
			continue
		}
		ref := body[m[8]:m[9]]
		field := ""
		if parts := strings.Split(ref, ":"); len(parts) == 3 {
			ref, field = parts[0]+":"+parts[1], parts[2]
		}
		image, ok := images[ref]
		if !ok {
			continue
		}
		name, tag := splitImage(image)
		want := image
		switch field {
		case "":
		case "tag":
			want = tag
		case "name":
			want = name
		default:
			continue // ":digest" needs digest reflection, not played
		}
		old := body[m[4]:m[5]]
		quote := ""
		if len(old) >= 2 && (old[0] == '"' || old[0] == '\'') {
			quote = old[:1]
			old = old[1 : len(old)-1]
		}
		if old == want || want == "" {
			continue
		}
		lines[i] = body[:m[4]] + quote + want + quote + body[m[5]:] + eol
		n++
	}
	return strings.Join(lines, ""), n
}

// splitImage splits "registry/repo:tag" (a digest, if any, stays with
// the tag) into name and tag.
func splitImage(image string) (string, string) {
	ref := image
	if at := strings.Index(ref, "@"); at >= 0 {
		ref = ref[:at]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return image[:i], image[i+1:]
	}
	return image, ""
}
