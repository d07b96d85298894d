package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// Ref names one namespaced Flux object.
type Ref struct{ Namespace, Name string }

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Outcome of one reconcile request.
type Outcome struct {
	Ref     Ref
	OK      bool
	Problem string // why not OK: suspended, not ready, timed out, missing
}

// patchWorkers bounds the reconcile requests in flight.
const patchWorkers = 8

// Token returns a fresh reconcile token, in the format `flux reconcile`
// writes.
func Token(now time.Time) string { return now.Format(time.RFC3339Nano) }

// Reconcile asks every object in refs of resource gvr to reconcile now and
// waits until each answers with status.lastHandledReconcileAt == token, or
// until ctx ends. A suspended object is not asked. Nothing here is fatal:
// the outcomes say what happened, and the caller goes on with whatever
// status Flux has.
func Reconcile(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, refs []Ref, token string) []Outcome {
	out := make([]Outcome, len(refs))
	byNS := map[string][]int{}
	for i, r := range refs {
		out[i].Ref = r
		byNS[r.Namespace] = append(byNS[r.Namespace], i)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{ReconcileAnnotation: token}}})
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		idx := byNS[ns]
		// List first: it tells which objects exist and are suspended, and
		// gives the resourceVersion to watch from, so no answer is missed.
		list, err := dc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			for _, i := range idx {
				out[i].Problem = "list: " + err.Error()
			}
			continue
		}
		objs := map[string]*unstructured.Unstructured{}
		for j := range list.Items {
			objs[list.Items[j].GetName()] = &list.Items[j]
		}
		var ask []int
		for _, i := range idx {
			o, ok := objs[refs[i].Name]
			switch {
			case !ok:
				out[i].Problem = "not found"
			case isSuspended(o):
				out[i].Problem = "suspended: Flux will not rescan it (flux resume)"
			default:
				ask = append(ask, i)
			}
		}
		// One PATCH per object (the API has no bulk patch), a few at a time:
		// with hundreds of repositories, one after another would add up.
		var mu sync.Mutex
		pending := map[string]int{}
		sem := make(chan struct{}, patchWorkers)
		var wg sync.WaitGroup
		for _, i := range ask {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				_, err := dc.Resource(gvr).Namespace(ns).Patch(ctx, refs[i].Name, types.MergePatchType, patch, metav1.PatchOptions{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					out[i].Problem = "request reconcile: " + err.Error()
					return
				}
				pending[refs[i].Name] = i
			}()
		}
		wg.Wait()
		if len(pending) == 0 {
			continue
		}
		waitNamespace(ctx, dc, gvr, ns, list.GetResourceVersion(), token, pending, out)
	}
	return out
}

func waitNamespace(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, ns, rv, token string, pending map[string]int, out []Outcome) {
	why := ""
	for len(pending) > 0 && ctx.Err() == nil {
		w, err := dc.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			why = "watch: " + err.Error()
			break
		}
		watching := true
		for watching {
			var ev watch.Event
			select {
			case <-ctx.Done():
				// Do not count on the watch closing with the request.
				watching = false
				continue
			case e, ok := <-w.ResultChan():
				if !ok {
					watching = false
					continue
				}
				ev = e
			}
			if ev.Type == watch.Error {
				// Most likely 410 Gone: restart from the current state, whose
				// initial events carry every object's status.
				rv = ""
				break
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			rv = u.GetResourceVersion()
			i, wanted := pending[u.GetName()]
			if !wanted || ev.Type == watch.Bookmark || ev.Type == watch.Deleted {
				continue
			}
			handled, _, _ := unstructured.NestedString(u.Object, "status", "lastHandledReconcileAt")
			if handled != token {
				continue
			}
			ready, msg := readyCondition(u)
			out[i].OK = ready
			if !ready {
				out[i].Problem = "not Ready after rescan: " + msg
			}
			delete(pending, u.GetName())
			if len(pending) == 0 {
				break
			}
		}
		w.Stop()
	}
	if why == "" {
		why = fmt.Sprint(context.Cause(ctx))
	}
	for _, i := range pending {
		out[i].Problem = fmt.Sprintf("no answer to the reconcile request (%s)", why)
	}
}

func isSuspended(u *unstructured.Unstructured) bool {
	s, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
	return s
}
