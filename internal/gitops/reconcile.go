package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// AnnReconcileDisabled is the record of kustomize-controller's per-object
// lever (flux.KustomizeReconcileAnnotation: disabled) that autodeploy set:
// ReconcileRecord JSON, on the same object as the lever. Both are ordinary
// Deployment annotations, so the deployment controller copies both onto
// the ReplicaSet it rolls out, and `kubectl rollout undo` copies both back:
// a lever revived from a ReplicaSet comes with its record.
const AnnReconcileDisabled = "autodeploy.dev/reconcile-disabled"

// ReconcileRecord is the value of AnnReconcileDisabled.
type ReconcileRecord struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Kustomization is namespace/name of the Kustomization that skips the
	// object while the lever is on.
	Kustomization string `json:"kustomization"`
}

// DisableReconcile adds the lever and its record to the annotations of a
// patch: a manual rollback sets both in the same patch as the rollback, so
// that Flux leaves just this Deployment alone while it is held.
func DisableReconcile(patch map[string]string, rec ReconcileRecord) {
	b, _ := json.Marshal(rec)
	patch[flux.KustomizeReconcileAnnotation] = flux.ReconcileDisabled
	patch[AnnReconcileDisabled] = string(b)
}

// EnableReconcile removes the lever and its record in a patch (an empty
// value removes an annotation: rollout.Annotate, rollout.AnnotateReplicaSets).
func EnableReconcile(patch map[string]string) {
	patch[flux.KustomizeReconcileAnnotation] = ""
	patch[AnnReconcileDisabled] = ""
}

// ReconcileState is the lever's state in one object's annotations.
type ReconcileState struct {
	Disabled bool // the lever is on
	// Record is autodeploy's record, nil when absent (or unreadable: a
	// garbled record is still autodeploy's key, and reads as a record
	// without details).
	Record *ReconcileRecord
}

// Ours: the lever is on and autodeploy's.
func (s ReconcileState) Ours() bool { return s.Disabled && s.Record != nil }

// ReadReconcile reads the lever and its record. legacy: a hold of
// autodeploy 2.0 says (hold.reconcileDisabled) that its rollback set the
// lever, from before the record had its own annotation.
func ReadReconcile(ann map[string]string, legacy bool) ReconcileState {
	s := ReconcileState{Disabled: ann[flux.KustomizeReconcileAnnotation] == flux.ReconcileDisabled}
	if v, ok := ann[AnnReconcileDisabled]; ok {
		var rec ReconcileRecord
		if json.Unmarshal([]byte(v), &rec) != nil {
			rec = ReconcileRecord{Reason: "unreadable record: " + v}
		}
		s.Record = &rec
	} else if legacy && s.Disabled {
		s.Record = &ReconcileRecord{Reason: "set by a rollback of autodeploy 2.0 (recorded in the hold)"}
	}
	return s
}

// Release is what clearing a service's reconcile lever writes: on the
// Deployment, and on each ReplicaSet that carries a copy (by name), so
// that no `kubectl rollout undo` brings it back.
type Release struct {
	Deployment  bool
	ReplicaSets []string
	// Foreign is a lever on the Deployment with no record of autodeploy's:
	// someone else's (or a record deleted by hand). It is left alone and
	// reported with the command that removes it.
	Foreign bool
}

// Any: something is to be written.
func (r Release) Any() bool { return r.Deployment || len(r.ReplicaSets) > 0 }

// ReleaseReconcile says which of autodeploy's reconcile levers (and
// records) of d and its ReplicaSets go. held: the service is held, and
// the lever belongs to the hold: only an explicit release (resume, forget:
// all) takes it then; a run (all false) releases what no hold explains any
// more: a hold removed by hand, a lever or record revived by an undo. A
// record without its lever goes too (someone removed the lever). legacy:
// see ReadReconcile; its ReplicaSet copies carry no record, so an explicit
// release of a legacy lever strips the lever from every ReplicaSet.
func ReleaseReconcile(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, held, all, legacy bool) Release {
	var out Release
	if held && !all {
		out.Foreign = foreign(d, legacy)
		return out
	}
	ds := ReadReconcile(d.Annotations, legacy)
	out.Deployment = ds.Record != nil
	out.Foreign = foreign(d, legacy)
	for _, rs := range rss {
		s := ReadReconcile(rs.Annotations, false)
		if s.Record != nil || (all && legacy && s.Disabled) {
			out.ReplicaSets = append(out.ReplicaSets, rs.Name)
		}
	}
	return out
}

func foreign(d *appsv1.Deployment, legacy bool) bool {
	s := ReadReconcile(d.Annotations, legacy)
	return s.Disabled && s.Record == nil
}

// Lever is one lever on Flux that holds for a service now, as status
// shows it.
type Lever struct {
	// Kind: exclusion, reconcile-disabled, kustomization-suspended,
	// promotion-policy.
	Kind   string `json:"kind"`
	Object string `json:"object"` // Kind namespace/name of the object that carries it
	Detail string `json:"detail"`
	// Ours: autodeploy set it (its record is there).
	Ours bool `json:"autodeploy"`
	// Clear is the command that takes it away.
	Clear string `json:"clear"`
}

// Lever kinds.
const (
	LeverExclusion = "exclusion"
	LeverReconcile = "reconcile-disabled"
	LeverSuspended = "kustomization-suspended"
	LeverPromotion = "promotion-policy"
)

// Levers lists the levers that hold for service: the reconcile lever on d
// and its ReplicaSet copies (an undo to one would set it again), the
// exclusions recorded for the service in its ImageRepository repo (nil:
// not read), and the Kustomization an autodeploy 1.x rollback suspended
// (legacySuspended, namespace/name, from the hold).
func Levers(service string, d *appsv1.Deployment, rss []*appsv1.ReplicaSet, held, legacy bool, repo *flux.Ref, exclusions []Exclusion, legacySuspended string) []Lever {
	var out []Lever
	resume := "autodeploy resume " + service
	if d != nil {
		s := ReadReconcile(d.Annotations, legacy)
		if s.Disabled {
			l := Lever{Kind: LeverReconcile, Object: "Deployment " + d.Namespace + "/" + d.Name, Ours: s.Record != nil}
			switch {
			case l.Ours:
				l.Detail = fmt.Sprintf("Flux Kustomization %s skips it (set by %s, %s)", s.Record.Kustomization, s.Record.By, s.Record.At.UTC().Format("2006-01-02 15:04 UTC"))
				l.Clear = resume
				if !held {
					l.Clear = "the next run (the service is no longer held), or " + resume
				}
			default:
				l.Detail = "Flux never applies or prunes it while it is set"
				l.Clear = fmt.Sprintf("kubectl annotate deployment/%s -n %s %s-", d.Name, d.Namespace, flux.KustomizeReconcileAnnotation)
			}
			out = append(out, l)
		}
		for _, rs := range rss {
			s := ReadReconcile(rs.Annotations, false)
			if !s.Disabled || ReadReconcile(d.Annotations, legacy).Disabled {
				// While the Deployment has it, its copies add nothing.
				continue
			}
			l := Lever{Kind: LeverReconcile, Object: "ReplicaSet " + rs.Namespace + "/" + rs.Name, Ours: s.Record != nil,
				Detail: fmt.Sprintf("a copy on revision %d: kubectl rollout undo to it sets it on the Deployment again", rollout.Revision(rs))}
			if l.Ours {
				l.Clear = "the next run, or " + resume
			} else {
				l.Clear = fmt.Sprintf("kubectl annotate replicaset/%s -n %s %s-", rs.Name, rs.Namespace, flux.KustomizeReconcileAnnotation)
			}
			out = append(out, l)
		}
	}
	if repo != nil {
		for _, e := range exclusions {
			if e.Service != service {
				continue
			}
			out = append(out, Lever{Kind: LeverExclusion, Object: "ImageRepository " + repo.String(), Ours: true,
				Detail: fmt.Sprintf("excludes tag %s (%s)", e.Tag, e.At.UTC().Format("2006-01-02 15:04 UTC")),
				Clear:  "a run once the policy selects a newer image, or " + resume + " --forget-failed"})
		}
	}
	if legacySuspended != "" {
		out = append(out, Lever{Kind: LeverSuspended, Object: "Kustomization " + legacySuspended, Ours: true,
			Detail: "suspended by a rollback of autodeploy 1.x (rollback --suspend-flux)", Clear: resume})
	}
	return out
}

// ResumeSuspended resumes a Kustomization an autodeploy 1.x rollback
// --suspend-flux suspended (namespace/name, from the hold's record), as
// `flux resume kustomization` sets spec.suspend; the lever nothing sets any
// more (resume and forget take it back). A Kustomization deleted since
// answers NotFound.
func ResumeSuspended(ctx context.Context, dc dynamic.Interface, kustomization string) error {
	k := flux.ParseRef(kustomization)
	patch := []byte(`{"spec":{"suspend":false}}`)
	_, err := dc.Resource(flux.KustomizationGVR).Namespace(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: rollout.FieldManager})
	return err
}
