package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
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

// ParseRef reads namespace/name, as Ref.String writes it.
func ParseRef(nsName string) Ref {
	ns, name, _ := strings.Cut(nsName, "/")
	return Ref{Namespace: ns, Name: name}
}

// Outcome of one reconcile request.
type Outcome struct {
	Ref     Ref
	OK      bool
	Problem string // why not OK: suspended, not ready, timed out, missing
	// ScanChanged: an ImageRepository's answer carries another scan result
	// (tags) than before the request, so its policies will be re-evaluated.
	ScanChanged bool
	// Scan is the answer's scan result, which the policies select from.
	Scan Scan
	// NoAnswer: the object was asked but did not answer before ctx ended
	// (its controller down or stuck), as opposed to a refused request or
	// a not-Ready answer.
	NoAnswer bool
}

// scanResult is what of an ImageRepository's last scan its policies depend
// on: the tags found (count, the latest ones, and the checksum of the list
// where Flux >= 2.7 writes one).
func scanResult(u *unstructured.Unstructured) string {
	scan, _, _ := unstructured.NestedMap(u.Object, "status", "lastScanResult")
	return fmt.Sprint(scan["tagCount"], scan["latestTags"], scan["revision"])
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
		before := map[string]string{}
		for name := range pending {
			before[name] = scanResult(objs[name])
		}
		waitNamespace(ctx, dc, gvr, ns, list.GetResourceVersion(), token, pending, before, out)
	}
	return out
}

func waitNamespace(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, ns, rv, token string, pending map[string]int, before map[string]string, out []Outcome) {
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
			out[i].ScanChanged = scanResult(u) != before[u.GetName()]
			out[i].Scan = ParseScan(u)
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
		out[i].NoAnswer = true
	}
}

func isSuspended(u *unstructured.Unstructured) bool {
	s, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
	return s
}

// Awaited is a policy a run waits for after its repository's rescan found
// new tags.
type Awaited struct {
	Ref Ref
	// Tag is what the policy must select from the scan (Order.Expect); ""
	// when the scan does not tell.
	Tag string
	// Off, without a Tag: the policy is done once it selects a tag other
	// than Off (an exclusion's: the policy must move off the failed tag).
	Off string
}

// done says whether a policy selecting tag is done (a write alone proves
// nothing where a Tag or Off is known).
func (a Awaited) done(tag string) bool {
	switch {
	case a.Tag != "":
		return tag == a.Tag
	case a.Off != "":
		return tag != "" && tag != a.Off
	}
	return false
}

// Lag is an awaited policy that did not select the scan's Tag in time.
type Lag struct {
	Ref      Ref
	Tag      string // expected
	Selected string // what it selects
}

// AwaitPolicies waits until each policy in want has been re-evaluated
// after its repository's rescan, or until bound passes or ctx ends, and
// returns the policies that did not select their Tag by then. Flux < 2.7
// answers no reconcile request for an ImagePolicy: its controller
// re-evaluates a policy after its repository's scan (observed 18 ms later
// with Flux 2.6), and a run that read the policy in between would miss
// the new tag until the next run. A write of the policy is no proof: the
// 2.6 controller re-evaluates it on every write of the repository, also
// the progress write before the scan, and writes it with the old tags
// first (issue 17 item 11: a run that accepted that write missed 1 or 2
// pushes in 10). So a policy is judged against the scan: it is done once
// it selects Tag. Where the scan does not tell (no Tag), it is done at
// its first write after the wait began (which the scan's re-evaluation
// makes; if that came first, the bound ends the wait). Lags are the
// policies with a Tag or an Off still pending at the end.
func AwaitPolicies(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, want []Awaited, bound time.Duration) []Lag {
	if len(want) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	byNS := map[string]map[string]Awaited{}
	for _, a := range want {
		if byNS[a.Ref.Namespace] == nil {
			byNS[a.Ref.Namespace] = map[string]Awaited{}
		}
		byNS[a.Ref.Namespace][a.Ref.Name] = a
	}
	var mu sync.Mutex
	var lags []Lag
	var wg sync.WaitGroup
	for ns, pending := range byNS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			selected := map[string]string{}
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				for name, a := range pending {
					if a.Tag != "" || a.Off != "" {
						lags = append(lags, Lag{Ref: a.Ref, Tag: a.Tag, Selected: selected[name]})
					}
				}
			}()
			// List first: a policy that already selects its Tag is done;
			// the others' resourceVersions tell a later write.
			list, err := dc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return
			}
			rvs := map[string]string{}
			for j := range list.Items {
				u := &list.Items[j]
				a, wanted := pending[u.GetName()]
				if !wanted {
					continue
				}
				selected[u.GetName()] = selectedTag(u)
				if a.done(selected[u.GetName()]) {
					delete(pending, u.GetName())
				}
				rvs[u.GetName()] = u.GetResourceVersion()
			}
			if len(pending) == 0 {
				return
			}
			w, err := dc.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
			if err != nil {
				return
			}
			defer w.Stop()
			for len(pending) > 0 {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					u, ok := ev.Object.(*unstructured.Unstructured)
					if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
						continue
					}
					a, wanted := pending[u.GetName()]
					if !wanted {
						continue
					}
					selected[u.GetName()] = selectedTag(u)
					written := u.GetResourceVersion() != rvs[u.GetName()]
					if a.done(selected[u.GetName()]) || (a.Tag == "" && a.Off == "" && written) {
						delete(pending, u.GetName())
					}
				}
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(lags, func(a, b Lag) int { return strings.Compare(a.Ref.String(), b.Ref.String()) })
	return lags
}
