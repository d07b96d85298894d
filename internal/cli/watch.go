package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// WatchOptions are the inputs of `autodeploy watch`.
type WatchOptions struct {
	// ProbeAddress serves /healthz and /readyz when set (":8080").
	ProbeAddress string

	f *Factory
	// listening is told the probes' address once it listens (tests ask
	// for port 0).
	listening func(net.Addr)

	cfg     *config.Config
	clients *kube.Clients
	// watchDynamic serves the informers: no request timeout cuts its
	// watches (kube.Clients.WatchDynamic).
	watchDynamic dynamic.Interface
	log          *runlog.Log
	standby      atomic.Bool
	watcher      atomic.Pointer[watch.Watcher]

	mu      sync.Mutex
	state   watch.State
	lostLog bool // lines lost from the log were said on stderr

	// The give-back of idle memory (watch.ReleaseIdle), once no action
	// ran for idleAfter; release is its seam for tests.
	idleMu    sync.Mutex
	idleTimer *time.Timer
	idleAfter time.Duration
	release   func() error
}

// IdleRelease is how long the watch waits after an action before it gives
// its idle memory back (watch.ReleaseIdle): the pages a burst of pushes,
// or a pass right after an action, needs are then still resident, and a
// watch idle for longer sits at its idle size (scripts/bench --watch-idle
// measures it after minutes).
const IdleRelease = 30 * time.Second

// releaseWhenIdle gives the idle memory back once no action started for
// idleAfter; a pending give-back is replaced.
func (o *WatchOptions) releaseWhenIdle(log *slog.Logger) {
	o.idleMu.Lock()
	defer o.idleMu.Unlock()
	if o.idleTimer != nil {
		o.idleTimer.Stop()
	}
	release := o.release
	if release == nil {
		release = watch.ReleaseIdle
	}
	o.idleTimer = time.AfterFunc(o.idleAfter, func() {
		if err := release(); err != nil {
			log.Debug("could not give back idle memory", "error", err)
		}
	})
}

// busy cancels a pending give-back: an action is starting.
func (o *WatchOptions) busy() {
	o.idleMu.Lock()
	defer o.idleMu.Unlock()
	if o.idleTimer != nil {
		o.idleTimer.Stop()
	}
}

// Complete takes the factory; watch has no arguments.
func (o *WatchOptions) Complete(f *Factory, _ *cobra.Command, _ []string) error {
	o.f = f
	return nil
}

// Validate checks the flags before the config or the cluster is read.
func (o *WatchOptions) Validate() error {
	if o.ProbeAddress == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(o.ProbeAddress)
	if err == nil {
		// What net.Listen takes: 0-65535 or a service name of
		// /etc/services; SplitHostPort takes any text (":99999" failed
		// at the listen, after the cluster was read).
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return &flagError{fmt.Errorf("invalid --probe-address %q: %v (use host:port or :port, such as :8080)", o.ProbeAddress, err)}
	}
	return nil
}

const watchLong = `Deploy a new image within seconds of Flux selecting it: a long-running
'autodeploy run' that reacts to the ImagePolicies instead of the clock.

The watch keeps a watch open on the configured ImagePolicies and, when one's
status.latestRef changes (what image-automation-controller reacts to too),
deploys the services that follow it through the same engine as 'run': the
same plan, verdicts, rollbacks, marks, notifications and log, the trigger
named on each run's lines. At every tick of the config's schedule, and when
it starts, it makes a full pass as 'run' does (rescan, verify what is
unverified, retries, soaks, promotions), so it needs no cron line; one left
in place does no harm (its run waits for the lock or does the same pass).

It takes the run lock only while it acts, never while it waits: rollback,
hold, resume and a cron run wait at most for the action in progress. Only one
watch acts at a time: with lock.type file, a second one on the host stands by
on <lockFile>.watch; with lock.type lease, replicas elect a leader on the
Lease <leaseName>-watch as client-go's leader election does, and a standby
takes over within the lease duration of the leader's last renewal.

It outlives watches that end, an API server that restarts and Flux's CRDs
missing for a while, saying so once in the log (watching, lost, back). The
first SIGINT or SIGTERM stops it: an action in progress stops waiting and
leaves its rollout marked for the next pass, as 'run' does; exit 0.
Without a Flux Receiver, Flux scans each ImageRepository at its interval:
see 'autodeploy manifests receiver' for seconds from a push to a rollout.`

const watchExample = `  # on a host, under systemd
  autodeploy manifests systemd --watch

  # in the foreground, with probes for a kubelet
  autodeploy watch --probe-address :8080`

func newCmdWatch(f *Factory, runF func(context.Context, *WatchOptions) error) *cobra.Command {
	o := &WatchOptions{idleAfter: IdleRelease}
	cmd := &cobra.Command{
		Use:     "watch",
		Short:   "Deploy new images within seconds: react to the ImagePolicies, with a full pass per schedule tick",
		Long:    watchLong,
		Example: watchExample,
		Args:    exactArgs(0, "no arguments"),
		RunE:    runE(f, o, runF),
	}
	cmd.Flags().StringVar(&o.ProbeAddress, "probe-address", o.ProbeAddress, "serve GET /healthz (liveness) and /readyz (readiness) on this address, such as :8080 (default: none)")
	return cmd
}

// Run watches until a signal.
func (o *WatchOptions) Run(ctx context.Context) error {
	f := o.f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	if len(cfg.Services) == 0 {
		return withCode(ExitUsage, fmt.Errorf("no services configured in %s: nothing to watch (add services, or stop the watch)", cfg.Path))
	}
	o.cfg = cfg
	watchID := runlog.NewRunID(time.Now())
	l, err := runlog.Open(ctx, cfg.Log, watchID, f.IO.Out, "cmd", "watch")
	if err != nil {
		return fmt.Errorf("refusing to watch: %w", err)
	}
	o.log = l
	clients, err := f.Clients()
	if err != nil {
		l.Error("watch failed", "error", err)
		l.Close()
		return err
	}
	o.clients = clients
	if o.watchDynamic, err = clients.WatchDynamic(); err != nil {
		l.Error("watch failed", "error", err)
		l.Close()
		return err
	}
	var probes *http.Server
	if o.ProbeAddress != "" {
		if probes, err = o.serveProbes(); err != nil {
			l.Error("watch failed", "error", err)
			l.Close()
			return err
		}
	}
	o.lead(ctx)
	if probes != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = probes.Shutdown(sctx)
		cancel()
	}
	l.Info("watch stopped", "reason", context.Cause(ctx))
	l.Close()
	return withLogLost(nil, l.Lost(), "watch", watchID)
}

// watchLocker is the lock only the active watch holds, for as long as it
// is active: the run lock's kind, beside it (<lockFile>.watch, the Lease
// <leaseName>-watch). The same Locker as every command's: a standby
// retries Acquire, which takes over a Lease leaseDuration after its
// record last changed (lock.LeaseLocker).
func watchLocker(f *Factory, cfg *config.Config, clients *kube.Clients) (l lock.Locker, name string, retry time.Duration) {
	if cfg.Lock.Type != config.LockLease {
		path := cfg.LockFile + ".watch"
		return &lock.FileLocker{Path: path}, path, 2 * time.Second
	}
	name = cfg.Lock.LeaseName + "-watch"
	// client-go's retry period is 2 s for a 15 s lease: about a tenth.
	return &lock.LeaseLocker{Client: clients.Kube.CoordinationV1(), Namespace: cfg.Lock.LeaseNamespace, Name: name,
		Identity: lockIdentity(f), Duration: cfg.Lock.LeaseDuration}, "Lease " + cfg.Lock.LeaseNamespace + "/" + name, max(cfg.Lock.LeaseDuration/10, time.Second)
}

// lead stands by until this watch holds the watch lock, then watches until
// ctx ends or the lock is lost, and stands by again.
func (o *WatchOptions) lead(ctx context.Context) {
	wl, name, retry := watchLocker(o.f, o.cfg, o.clients)
	log := o.log.Logger
	standing, failing := false, false
	for ctx.Err() == nil {
		o.mu.Lock()
		o.state = watch.State{Since: time.Now()}
		record := o.state.Record()
		o.mu.Unlock()
		h, err := wl.Acquire(ctx, record)
		var held *lock.HeldError
		switch {
		case errors.As(err, &held):
			o.standby.Store(true)
			if !standing {
				log.Info("watch: standing by: another watch is active", "holder", held.Holder.Name())
				standing, failing = true, false
			}
			watch.Sleep(ctx, retry)
			continue
		case err != nil:
			if !failing && ctx.Err() == nil {
				log.Warn("watch: cannot take the watch's lock; retrying", "error", o.clients.Classify(err))
				failing, standing = true, false
			}
			watch.Sleep(ctx, retry)
			continue
		}
		o.standby.Store(false)
		standing, failing = false, false
		log.Info("watch: active", "lock", name)
		w := o.newWatcher(log, func(ctx context.Context, a watch.Action) { o.act(ctx, h, a) })
		o.watcher.Store(w)
		w.Run(h.Context())
		if ctx.Err() == nil {
			log.Warn("watch: lost the watch's lock; standing by", "error", context.Cause(h.Context()))
		}
		if err := h.Release(); err != nil {
			log.Warn("watch: could not release the watch's lock; it expires", "error", err)
		}
	}
}

// newWatcher is the watch of the configured policies, acting by act.
func (o *WatchOptions) newWatcher(log *slog.Logger, act func(context.Context, watch.Action)) *watch.Watcher {
	w := &watch.Watcher{Config: o.cfg, Dynamic: o.watchDynamic, Discovery: o.clients.Kube.Discovery(), Log: log, Act: act,
		Kubeconfig: o.clients.Source}
	if o.clients.Config != nil {
		w.Server, w.Classify = o.clients.Config.Host, o.clients.Classify
	}
	return w
}

// act is one action: a run of the services it names (all for a pass),
// under the run lock, logged as a run of its own with its trigger.
func (o *WatchOptions) act(ctx context.Context, watchLock *lock.Held, a watch.Action) {
	o.busy()
	f, cfg, clients := o.f, o.cfg, o.clients
	runID := runlog.NewRunID(time.Now())
	log := o.log.ForRun(runID, "cmd", "watch", "trigger", string(a.Trigger))
	event := string(a.Trigger)
	if len(a.Policies) > 0 {
		event += " " + strings.Join(a.Policies, " ")
		log.Info("policy changed", "policies", strings.Join(a.Policies, ","), "services", strings.Join(a.Services, ","))
	}
	o.note(watchLock, func(s *watch.State) { s.LastEvent, s.Event = time.Now(), event })
	h, err := takeLock(ctx, f, cfg, clients, "autodeploy watch "+runID, cfg.RunDeadline(), func(holder lock.Holder) {
		log.Info("waiting for the lock", "holder", holder.Name())
	})
	if err != nil {
		// A policy change not acted on now is the next pass's.
		if ctx.Err() == nil {
			log.Warn("action skipped: the next pass does it", "error", err)
		}
		return
	}
	r := &deploy.Runner{Kube: clients.Kube, Dynamic: clients.Dynamic, Config: cfg, Now: time.Now, Log: log, Notify: notify.New(cfg.Notify, log)}
	if f.Options.Verbose {
		r.Progress = progressPrinter(f.IO.ErrOut)
	}
	res, runErr := r.Run(h.Context(), runID, deploy.Options{Services: a.Services, NoReconcile: a.Trigger == watch.TriggerPolicy, PolicySeen: a.Seen})
	if cause := context.Cause(h.Context()); errors.Is(cause, lock.ErrLost) {
		log.Error("run stopped: the lock was lost", "error", cause)
	}
	if runErr != nil && res != nil && res.Services == nil && !res.Cancelled {
		log.Error("run failed", "error", clients.Classify(runErr))
	}
	// Under the lock, as run does: the metrics file and the record of
	// what cron was told are shared with cron's runs.
	recordMetrics(ctx, cfg.Metrics, res, runErr, log)
	o.tell(res, log)
	if err := h.Release(); err != nil {
		log.Warn("could not release the lock", "error", err)
	}
	// Idle until the next event with only what watching needs resident.
	o.releaseWhenIdle(log)
	if a.Trigger != watch.TriggerPolicy && runErr == nil {
		o.note(watchLock, func(s *watch.State) { s.LastPass = time.Now() })
	}
}

// note updates the watch's state and its lock's record.
func (o *WatchOptions) note(h *lock.Held, change func(*watch.State)) {
	o.mu.Lock()
	change(&o.state)
	record := o.state.Record()
	o.mu.Unlock()
	h.Note(record)
}

// tell writes on stderr (journald, kubectl logs) what `run` under cron
// mails: the services that need a person, a standing problem once; and,
// once, that lines could not be written to the log.
func (o *WatchOptions) tell(res *deploy.Result, log *slog.Logger) {
	cfg := o.cfg
	if res != nil && res.Services != nil {
		heard := heardBefore(alertedRecord(cfg.Log.File), res, configuredNames(cfg), log)
		if line := failureLine(res, heard); line != "" {
			fmt.Fprintf(o.f.IO.ErrOut, "run %s: %s (log: %s)\n", res.RunID, line, cfg.Log.File)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if lost := o.log.Lost(); lost != nil && !o.lostLog {
		o.lostLog = true
		fmt.Fprintf(o.f.IO.ErrOut, "watch: %v\n", lost)
	}
}

// serveProbes listens on ProbeAddress: /healthz answers 200 while the
// process runs its loop, /readyz once the watches are synced or while it
// stands by as a non-leader (a standby is ready to take over).
func (o *WatchOptions) serveProbes() (*http.Server, error) {
	ln, err := net.Listen("tcp", o.ProbeAddress)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		// No port fixes an address this host does not have (issue 18,
		// ninth pass).
		_, port, _ := net.SplitHostPort(o.ProbeAddress)
		return nil, fmt.Errorf("--probe-address %s: %w (use an address of this host, or :%s for all of them)", o.ProbeAddress, err, port)
	}
	if err != nil {
		return nil, fmt.Errorf("--probe-address %s: %w (choose another port)", o.ProbeAddress, err)
	}
	if o.listening != nil {
		o.listening(ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if w2 := o.watcher.Load(); o.standby.Load() || (w2 != nil && w2.Synced()) {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "not synced yet", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
