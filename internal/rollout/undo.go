package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// ErrNoHistory means there is no earlier revision to go back to.
var ErrNoHistory = errors.New("no rollout history found")

// ErrPaused is kubectl's refusal to roll back a paused Deployment.
var ErrPaused = errors.New("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again")

// UndoResult says what Undo did.
type UndoResult struct {
	FromRevision, ToRevision int64
	// Skipped is true when the template already matched the target: kubectl
	// prints "skipped rollback (current template already matches revision N)".
	Skipped bool
	Target  *appsv1.ReplicaSet
	// Deployment is the patched Deployment (nil when skipped).
	Deployment *appsv1.Deployment
}

// UndoOptions tune Undo.
type UndoOptions struct {
	// ToRevision is the revision to restore; 0 means the previous one.
	ToRevision int64
	// Annotations are set on the Deployment in the same patch.
	Annotations map[string]string
	// Adjust, when set, may change Annotations once the target revision
	// is known (what a mark says can depend on what is restored).
	Adjust func(target *appsv1.ReplicaSet, ann map[string]string)
	DryRun bool
	// Precondition makes the patch conditional on d being unchanged since
	// it was read (see SetImage).
	Precondition bool
}

// Undo restores a revision of d the way `kubectl rollout undo` does: the
// target ReplicaSet's whole pod template (without its pod-template-hash
// label) replaces the Deployment's, together with the target's
// change-cause. Unlike kubectl, other annotations of the Deployment are
// kept: kubectl replaces them all, which would drop autodeploy's own marks.
func Undo(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, o UndoOptions) (UndoResult, error) {
	if d.Spec.Paused {
		return UndoResult{}, fmt.Errorf("deployment %s/%s: %w (kubectl rollout resume deployment/%s -n %s)", d.Namespace, d.Name, ErrPaused, d.Name, d.Namespace)
	}
	owned, err := ListOwned(ctx, c, d)
	if err != nil {
		return UndoResult{}, err
	}
	res := UndoResult{FromRevision: Revision(d)}
	target, err := pickRevision(d, owned, o.ToRevision)
	if err != nil {
		return res, err
	}
	res.Target, res.ToRevision = target, Revision(target)
	if EqualIgnoreHash(&target.Spec.Template, &d.Spec.Template) {
		res.Skipped = true
		return res, nil
	}
	tmpl := target.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	ops := []PatchOp{{Op: "replace", Path: "/spec/template", Value: tmpl}}
	ann := map[string]string{}
	for k, v := range o.Annotations {
		ann[k] = v
	}
	if o.Adjust != nil {
		o.Adjust(target, ann)
	}
	if cause, ok := target.Annotations[ChangeCauseAnnotation]; ok {
		if _, set := ann[ChangeCauseAnnotation]; !set {
			ann[ChangeCauseAnnotation] = cause
		}
	}
	ops = append(ops, AnnotationOps(d, ann)...)
	if o.Precondition {
		ops = withPrecondition(d, ops)
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return res, err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager}
	if o.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := c.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.JSONPatchType, patch, opts)
	if err != nil {
		return res, fmt.Errorf("roll back deployment %s/%s to revision %d: %w", d.Namespace, d.Name, res.ToRevision, err)
	}
	res.Deployment = out
	return res, nil
}

// FieldManager names autodeploy in managedFields.
const FieldManager = "autodeploy"

func pickRevision(d *appsv1.Deployment, owned []*appsv1.ReplicaSet, to int64) (*appsv1.ReplicaSet, error) {
	if to > 0 {
		for _, rs := range owned {
			if Revision(rs) == to {
				return rs, nil
			}
		}
		// kubectl's words, and the revisions there are: the fix.
		var revs []int64
		for _, rs := range owned {
			if r := Revision(rs); r > 0 {
				revs = append(revs, r)
			}
		}
		slices.Sort(revs)
		kept := "no revision"
		if len(revs) > 0 {
			var nums []string
			for _, r := range revs {
				nums = append(nums, fmt.Sprint(r))
			}
			kept = "revisions " + strings.Join(nums, ", ")
		}
		return nil, fmt.Errorf("unable to find the specified revision %d of deployment %s/%s: it keeps %s (autodeploy history lists them)", to, d.Namespace, d.Name, kept)
	}
	return PreviousRevision(d, owned)
}

// PreviousRevision is what `kubectl rollout undo` restores without
// --to-revision.
func PreviousRevision(d *appsv1.Deployment, owned []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	// kubectl's choice (deploymentRevision in kubectl's polymorphichelpers):
	// the second-highest revision among the ReplicaSets, whatever the
	// Deployment's own annotation says. After a rollback the highest is the
	// restored ReplicaSet, so a second undo goes back to what was undone.
	var latest, previous *appsv1.ReplicaSet
	for _, rs := range owned {
		r := Revision(rs)
		switch {
		case r <= 0:
		case latest == nil || r > Revision(latest):
			latest, previous = rs, latest
		case previous == nil || r > Revision(previous):
			previous = rs
		}
	}
	if previous == nil {
		return nil, fmt.Errorf("deployment %s/%s: %w (only revision %d exists; revisionHistoryLimit %s)", d.Namespace, d.Name, ErrNoHistory, Revision(d), historyLimit(d))
	}
	return previous, nil
}

// PatchOp is one JSON patch (RFC 6902) operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// AnnotationOps returns JSON patch operations that set (value non-empty) or
// remove (value "") annotations of obj, creating the map if it is absent.
func AnnotationOps(obj metav1.Object, ann map[string]string) []PatchOp {
	var ops []PatchOp
	existing := obj.GetAnnotations()
	if existing == nil && len(ann) > 0 {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
	}
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		path := "/metadata/annotations/" + escapePointer(k)
		if v := ann[k]; v != "" {
			if k == ChangeCauseAnnotation {
				v = printable(v)
			}
			ops = append(ops, PatchOp{Op: "add", Path: path, Value: v})
		} else if _, ok := existing[k]; ok {
			ops = append(ops, PatchOp{Op: "remove", Path: path})
		}
	}
	return ops
}

// printable writes a change-cause's control characters as Go escapes
// (\x1b, \n): kubectl rollout history prints it as it is, and a rollback's
// cause quotes the cluster's messages (a pod's, an event's) and promote's
// --reason a person's text: an escape sequence reached the terminal of
// whoever ran kubectl, a line break split its table (issue 18, ninth pass).
func printable(s string) string {
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unprintable(r rune) bool { return r != ' ' && !strconv.IsPrint(r) }

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func historyLimit(d *appsv1.Deployment) string {
	if d.Spec.RevisionHistoryLimit == nil {
		return "unset"
	}
	if *d.Spec.RevisionHistoryLimit == 0 {
		return "0 keeps no earlier revision"
	}
	return fmt.Sprint(*d.Spec.RevisionHistoryLimit)
}
