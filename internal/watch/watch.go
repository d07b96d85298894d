// Package watch is `autodeploy watch`'s loop: it watches the configured
// ImagePolicies and hands an action to the deploy engine when one's
// status.latestRef changes, and a full pass at every tick of the config's
// schedule. What an action does (the run lock, deploy.Runner) is the
// caller's: Watcher only decides when, and for which services.
//
// Why status.latestRef: it is what image-automation-controller itself
// reacts to (its ImagePolicy predicate compares the latest ref of the old
// and the new object, fluxcd/image-automation-controller
// internal/controller/predicates.go), and what the real
// image-reflector-controller writes 0.25-0.34 s after a Receiver's
// reconcile request (issue 20). ParsePolicy reads it for every served
// version (latestImage on v1beta1).
//
// The watches are client-go informers: their reflectors list, then watch
// from the list's resourceVersion, end each watch after 5-10 minutes by
// design and watch again, list again on 410 Gone, and back off while the
// API server is away. Between events only the open watches cost anything;
// there is no polling. The informers' own logging (klog) is silenced by
// the caller; Watcher says in the log only when its own state changes:
// watching, lost the API server (or Flux's API), back.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ui"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
)

// Trigger is what started an action: the log says it on each.
type Trigger string

const (
	// TriggerStart is the full pass when the watch starts (or takes over
	// from another): what changed while no watch ran.
	TriggerStart Trigger = "start"
	// TriggerPolicy is a change of status.latestRef.
	TriggerPolicy Trigger = "policy-change"
	// TriggerTick is the full pass at a tick of the config's schedule,
	// as `run` from cron would do: verifying what is unverified, retries,
	// soaks, promotions.
	TriggerTick Trigger = "tick"
)

// Action is one thing for the engine to do.
type Action struct {
	Trigger Trigger
	// Services are the services to act on; nil for a full pass.
	Services []string
	// Policies are the ImagePolicies whose latestRef changed
	// (namespace/name), for the log.
	Policies []string
	// Seen is when the first of those changes was seen: the start of the
	// policy-change-to-patch latency (metrics).
	Seen time.Time
}

// Watcher watches the configured ImagePolicies.
type Watcher struct {
	Config    *config.Config
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	Log       *slog.Logger
	// Server and Kubeconfig are the kubeconfig's server and the file
	// naming it, for the lost line (shown as exit 3's errors show them).
	Server, Kubeconfig string
	// Classify explains an error of the API as exit 3 does (the clients'
	// Classify); the lost line logged client-go's raw text ("unexpected
	// error when reading response body. Please retry."; issue 18, sixth
	// pass). Nil logs the error as it is.
	Classify func(error) error
	// Act does an action; it returns when the action is over. Events that
	// arrive meanwhile are gathered into the next one.
	Act func(context.Context, Action)
	// Now is the clock of the schedule's ticks (time.Now unless a test
	// sets one); Retry how long to wait before looking for Flux's API
	// again (a second unless set).
	Now   func() time.Time
	Retry time.Duration

	synced atomic.Bool
	state  connState

	mu      sync.Mutex
	pending map[string]time.Time // policy key -> when its change was first seen
	kick    chan struct{}
	// changedHook, when set, is told each change recorded (tests).
	changedHook func(key string)
}

// Synced says the watches have listed every policy namespace once: the
// watch is ready (its readiness probe).
func (w *Watcher) Synced() bool { return w.synced.Load() }

// errAPIGone: the ImagePolicy resource is not served any more (Flux's
// CRDs deleted, or upgraded to another version): detect it again.
var errAPIGone = errors.New("the ImagePolicy API is no longer served")

// Run watches until ctx ends. It never returns on a transient error: it
// says so once and keeps trying. An action in progress when ctx ends sees
// ctx end too.
func (w *Watcher) Run(ctx context.Context) {
	if w.Now == nil {
		w.Now = time.Now
	}
	retry := w.Retry
	if retry <= 0 {
		retry = time.Second
	}
	w.state.log, w.state.server, w.state.kubeconfig, w.state.classify = w.Log, w.Server, w.Kubeconfig, w.Classify
	w.kick = make(chan struct{}, 1)
	for ctx.Err() == nil {
		api, err := flux.Detect(ctx, w.Discovery)
		if err != nil {
			if ctx.Err() == nil {
				w.state.lost(err)
				Sleep(ctx, retry)
			}
			continue
		}
		err = w.watch(ctx, api)
		if errors.Is(err, errAPIGone) {
			w.state.lost(err)
			Sleep(ctx, retry)
		}
	}
}

// Sleep waits d or until ctx ends: the retry pause of the watch's loops.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// watch runs one informer per namespace of the configured policies and
// the action loop, until ctx ends or the policies' API goes away.
func (w *Watcher) watch(ctx context.Context, api flux.API) error {
	byPolicy := ServicesByPolicy(w.Config)
	namespaces := map[string]bool{}
	for key := range byPolicy {
		namespaces[strings.SplitN(key, "/", 2)[0]] = true
	}
	ictx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var synced []cache.InformerSynced
	var stores []cache.Store
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		inf := w.informer(ictx, api, ns, byPolicy, cancel)
		synced = append(synced, inf.HasSynced)
		stores = append(stores, inf.GetStore())
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ictx)
		}()
	}
	if !cache.WaitForCacheSync(ictx.Done(), synced...) {
		return context.Cause(ictx)
	}
	w.state.watching(fmt.Sprintf("watching %s (%s) in %s", ui.Count(len(byPolicy), "ImagePolicy", "ImagePolicies"), api.Policies().GroupVersion(), strings.Join(slices.Sorted(maps.Keys(namespaces)), ", ")))
	first := !w.synced.Swap(true)
	if first {
		w.checkReceiver(ictx, api, byPolicy, stores)
		w.Act(ictx, Action{Trigger: TriggerStart})
	}
	for {
		if err := w.next(ictx, byPolicy); err != nil {
			return err
		}
	}
}

// checkReceiver warns, once at the start, when no Ready Flux Receiver
// lists an ImageRepository of the watched policies: a push then reaches the
// policy only at the repository's scan interval, and the watch's seconds
// are that interval (doctor says the same, with the fix).
func (w *Watcher) checkReceiver(ctx context.Context, api flux.API, byPolicy map[string][]string, stores []cache.Store) {
	var policies []flux.Policy
	for _, st := range stores {
		for _, obj := range st.List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				if p := flux.ParsePolicy(u); byPolicy[p.Key()] != nil {
					policies = append(policies, p)
				}
			}
		}
	}
	// The stores' order is a map's: sorted, the warning reads the same
	// every time.
	sort.Slice(policies, func(i, j int) bool { return policies[i].Key() < policies[j].Key() })
	repos := flux.RepositoriesOf(policies)
	if len(repos) == 0 {
		return
	}
	cov, err := flux.ReceiverCoverage(ctx, w.Dynamic, api, w.Config.Flux.Namespace, repos)
	switch {
	case err != nil:
		w.Log.Warn("watch: cannot tell whether a Flux Receiver answers the registry's webhook (see autodeploy doctor)", "error", err)
	case !cov.All():
		missing := cov.Uncovered
		if !cov.Installed {
			missing = repos
		}
		w.Log.Warn("watch: no Ready Flux Receiver lists these ImageRepositories: a push reaches their policies only at each repository's scan interval", "repositories", flux.RefList(missing), "fix", flux.ReceiverFix)
	}
}

// next waits for the next policy change or tick, and acts on it.
func (w *Watcher) next(ctx context.Context, byPolicy map[string][]string) error {
	var tick <-chan time.Time
	if next := w.Config.Next(w.Now()); !next.IsZero() {
		t := time.NewTimer(next.Sub(w.Now()))
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-tick:
		w.Act(ctx, Action{Trigger: TriggerTick})
	case <-w.kick:
		if a, ok := w.take(byPolicy); ok {
			w.Act(ctx, a)
		}
	}
	return nil
}

// take empties the pending changes into one action.
func (w *Watcher) take(byPolicy map[string][]string) (Action, bool) {
	w.mu.Lock()
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(pending) == 0 {
		return Action{}, false
	}
	a := Action{Trigger: TriggerPolicy}
	for key, seen := range pending {
		a.Policies = append(a.Policies, key)
		a.Services = append(a.Services, byPolicy[key]...)
		if a.Seen.IsZero() || seen.Before(a.Seen) {
			a.Seen = seen
		}
	}
	sort.Strings(a.Policies)
	sort.Strings(a.Services)
	a.Services = slices.Compact(a.Services)
	return a, true
}

// changed records a policy whose latestRef changed and wakes the loop.
func (w *Watcher) changed(key string) {
	w.mu.Lock()
	if w.pending == nil {
		w.pending = map[string]time.Time{}
	}
	if _, ok := w.pending[key]; !ok {
		w.pending[key] = time.Now()
	}
	w.mu.Unlock()
	if w.changedHook != nil {
		w.changedHook(key)
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// informer watches the ImagePolicies of one namespace. A successful list
// or watch says the API server is back; a failed one that it is lost; a
// resource no longer served cancels the watch (errAPIGone).
func (w *Watcher) informer(ctx context.Context, api flux.API, ns string, byPolicy map[string][]string, cancel context.CancelCauseFunc) cache.SharedIndexInformer {
	res := w.Dynamic.Resource(api.Policies()).Namespace(ns)
	lw := listWatch{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := res.List(ctx, o)
			w.outcome(err, cancel)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			wi, err := res.Watch(ctx, o)
			w.outcome(err, cancel)
			return wi, err
		},
	}}
	inf := cache.NewSharedIndexInformerWithOptions(lw, &unstructured.Unstructured{}, cache.SharedIndexInformerOptions{})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		// A watch that ends (its timeout, 410 Gone, EOF) is the
		// reflector's business: it lists or watches again.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			w.outcome(err, cancel)
		}
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			// A policy created after the start (Flux's objects applied
			// after autodeploy's): act on what it selects.
			if u, ok := obj.(*unstructured.Unstructured); ok && !initial && w.synced.Load() {
				p := flux.ParsePolicy(u)
				if _, ok := byPolicy[p.Key()]; ok && p.Latest != "" {
					w.changed(p.Key())
				}
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 {
				return
			}
			po, pn := flux.ParsePolicy(o), flux.ParsePolicy(n)
			if _, ok := byPolicy[pn.Key()]; ok && LatestChanged(po, pn) {
				w.changed(pn.Key())
			}
		},
	})
	return inf
}

// listWatch lists, then watches: no streaming list (client-go's
// WatchListClient, sendInitialEvents), which the seed's Kubernetes 1.28
// does not serve (its WatchList feature gate is alpha and off there), and
// a list of a few ImagePolicies does not need.
type listWatch struct{ *cache.ListWatch }

// IsWatchListSemanticsUnSupported tells the reflector so
// (k8s.io/client-go/util/watchlist).
func (listWatch) IsWatchListSemanticsUnSupported() bool { return true }

// LatestChanged is the predicate: the policy now selects another image
// (a new tag, or a new digest of the same tag). Every other write (a
// condition, lastHandledReconcileAt, observedGeneration) is not a reason
// to act.
func LatestChanged(old, cur flux.Policy) bool {
	return cur.Latest != "" && cur.Latest != old.Latest
}

// outcome tells the connection's state from one list or watch request.
func (w *Watcher) outcome(err error, cancel context.CancelCauseFunc) {
	switch {
	case err == nil:
		w.state.back()
	case errors.Is(err, context.Canceled):
	case apierrors.IsNotFound(err):
		cancel(fmt.Errorf("%w (%v)", errAPIGone, err))
	default:
		w.state.lost(err)
	}
}

// ServicesByPolicy maps each configured ImagePolicy (namespace/name) to
// the services that follow it; services that take their image from
// another service (promote) follow none.
func ServicesByPolicy(cfg *config.Config) map[string][]string {
	m := map[string][]string{}
	for _, s := range cfg.Services {
		if s.PolicyName != "" {
			key := s.PolicyNamespace + "/" + s.PolicyName
			m[key] = append(m[key], s.Name)
		}
	}
	return m
}

// connState logs the watch's own state changes, once each: the first
// "watching", then "lost" on the first failure (not on every retry), and
// "back" on the next success.
type connState struct {
	log                *slog.Logger
	server, kubeconfig string
	classify           func(error) error
	mu                 sync.Mutex
	seen               bool // watching once
	down               bool
}

func (c *connState) watching(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen && !c.down {
		return
	}
	if c.down {
		c.log.Info("watch: back: " + msg)
	} else {
		c.log.Info("watch: " + msg)
	}
	c.seen, c.down = true, false
}

func (c *connState) lost(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return
	}
	c.down = true
	// The server as exit 3's errors show it, the kubeconfig naming it:
	// which cluster went away is the first thing to know (issue 18,
	// sixth pass), its credentials never (nor in the error's URLs).
	where := ""
	if c.server != "" {
		where = fmt.Sprintf(" at %s (kubeconfig %s)", kube.ShownServer(c.server), c.kubeconfig)
	}
	why := ""
	if c.classify != nil {
		err = c.classify(err)
		// The line names the server: the explanation alone, not its
		// naming again.
		var (
			ue *kube.UnreachableError
			ae *kube.AnswerError
		)
		switch {
		case where == "":
		case errors.As(err, &ue) && ue.Server != "":
			why = ue.Reason()
		case errors.As(err, &ae):
			why = ae.Reason()
		}
	}
	if why == "" {
		why = err.Error()
	}
	c.log.Warn("watch: lost the API server"+where+" or Flux's API; retrying until it is back", "error", config.RedactIn(why, c.server))
}

func (c *connState) back() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.down {
		return
	}
	c.down = false
	c.log.Info("watch: back: the API server answers again")
}
