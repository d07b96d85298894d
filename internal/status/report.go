// Package status answers "what is going on?" for `autodeploy status`: each
// service's Deployment, pods, Flux detections and autodeploy's own marks,
// the last run from the log, and the next scheduled run. Collect reads the
// cluster with a handful of LISTs; Build is a pure function of what was
// read, so the output can be tested with a fixed clock.
package status

import (
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// SchemaVersion is bumped on any incompatible change of Report's JSON.
const SchemaVersion = 1

// Report is the whole status; its JSON form is the `-o json` schema
// documented in the README.
type Report struct {
	SchemaVersion int       `json:"schemaVersion"`
	GeneratedAt   time.Time `json:"generatedAt"`
	// Healthy is true when every service is healthy, up to date, not held
	// and verified: what exit code 0 means.
	Healthy  bool      `json:"healthy"`
	FluxAPI  string    `json:"fluxImageAPI,omitempty"`
	Services []Service `json:"services"`
	// Pipelines are the chains of promotions (config promote) that hold
	// one of Services, each stage from the first.
	Pipelines []Pipeline  `json:"pipelines,omitempty"`
	LastRun   *runlog.Run `json:"lastRun,omitempty"`
	// LastRunError says why there is no last run (no log yet, unreadable).
	LastRunError  string       `json:"lastRunError,omitempty"`
	RunInProgress *lock.Holder `json:"runInProgress,omitempty"`
	// RunInProgressError says why the lock's holder could not be read (a
	// Lease the identity may not get): whether a run is in progress is
	// unknown, which RunInProgress being nil would not say.
	RunInProgressError string `json:"runInProgressError,omitempty"`
	// Watch is the `autodeploy watch` that acts, or the last one, when one
	// stopped without releasing its lock (it died); nil when none ran.
	Watch *Watch `json:"watch,omitempty"`
	// WatchError says why the watch's lock could not be read.
	WatchError string   `json:"watchError,omitempty"`
	Schedule   Schedule `json:"schedule"`
	Log        []string `json:"log,omitempty"`
}

// Watch is what the watch's lock record says (watch.State).
type Watch struct {
	// Running: it holds the watch's lock now. False: it stopped without
	// releasing it (killed, crashed); a watch stopped on purpose leaves no
	// record.
	Running bool `json:"running"`
	// Holder is its pid (lock.type file) or its Lease identity, host/pid
	// or the pod's name.
	Holder string `json:"holder"`
	// Lock is the watch's lock (<lockFile>.watch, or Lease
	// ns/<leaseName>-watch): removing it retires a watch that died.
	Lock string `json:"lock"`
	watch.State
}

// Schedule is the cron schedule and what it implies now.
type Schedule struct {
	Spec    string    `json:"spec"`
	NextRun time.Time `json:"nextRun"`
	// Overdue: the last run is older than two periods (is cron running?).
	Overdue bool `json:"overdue"`
}

// Service states, from best to worst.
const (
	StateHealthy     = "healthy"
	StateProgressing = "progressing"
	StatePaused      = "paused"
	StateDegraded    = "degraded" // complete, but fewer ready replicas than desired
	StateFailed      = "failed"   // progress deadline exceeded, or pods that cannot start
	StateMissing     = "missing"  // no Deployment
)

// Sync values: the Deployment's image against the policy's.
const (
	SyncUpToDate = "up-to-date"
	SyncBehind   = "behind"
	SyncAhead    = "ahead" // runs an image newer than the policy's (a refused downgrade)
	SyncUnknown  = "unknown"
)

// Service is one configured service.
type Service struct {
	Name       string              `json:"name"`
	Namespace  string              `json:"namespace"`
	Deployment string              `json:"deployment"`
	Container  string              `json:"container,omitempty"`
	State      string              `json:"state"`
	Sync       string              `json:"sync"`
	Problems   []string            `json:"problems,omitempty"`
	Rollout    *Rollout            `json:"rollout,omitempty"`
	Policy     *Policy             `json:"imagePolicy,omitempty"`
	Repository *Repository         `json:"imageRepository,omitempty"`
	GitOps     *GitOps             `json:"gitops,omitempty"`
	NextRun    *NextAction         `json:"nextRun,omitempty"`
	Hold       *deploy.Hold        `json:"hold,omitempty"`
	Failed     *deploy.FailedImage `json:"failedImage,omitempty"`
	// Retry: an image whose rollout failed for another cause than the
	// image (Retry.Cause, Retry.Evidence), tried again after Retry.After.
	Retry *deploy.Retry `json:"retry,omitempty"`
	// Window is the service's deploy windows, when it has any.
	Window *Window `json:"deployWindow,omitempty"`
	// Levers are the levers on Flux that hold for the service now
	// (internal/gitops), each with the command that clears it.
	Levers []gitops.Lever `json:"fluxLevers,omitempty"`
	// Unverified: autodeploy set the image and no run has verified it yet.
	Unverified bool `json:"unverified,omitempty"`
	// Promotion is where a promoted service (config promote) takes its
	// image from, and how that source stands.
	Promotion *Promotion `json:"promotion,omitempty"`
	// Soak is the soak (config soak) of the image the Deployment runs:
	// going on (Passed false; Until says when it ends) or passed.
	Soak *deploy.SoakMark `json:"soak,omitempty"`
	Pods []Pod            `json:"pods,omitempty"`
}

// Window says when the service's rollouts may start (config
// deployWindows).
type Window struct {
	// Open: a window is open now; ClosesAt is when it closes, Closes
	// says it in the window's zone.
	Open     bool       `json:"open"`
	ClosesAt *time.Time `json:"closesAt,omitempty"`
	Closes   string     `json:"closes,omitempty"`
	// NextOpen is when the next window opens; Next says it in the
	// window's zone ("Mon 09:00 Europe/Paris").
	NextOpen *time.Time `json:"nextOpen,omitempty"`
	Next     string     `json:"next,omitempty"`
	// Windows are the windows as configured.
	Windows []string `json:"windows"`
}

// Rollout is the Deployment's side.
type Rollout struct {
	Image       string     `json:"image"`
	Desired     int32      `json:"desired"`
	Ready       int32      `json:"ready"`
	Updated     int32      `json:"updated"`
	Available   int32      `json:"available"`
	State       string     `json:"state"` // kubectl's: complete, progressing, failed, paused
	Message     string     `json:"message"`
	Revision    int64      `json:"revision"`
	RolledOutAt *time.Time `json:"rolledOutAt,omitempty"`
	ChangeCause string     `json:"changeCause,omitempty"`
	// ImageSetBy is the field manager that last set the container's image
	// (managedFields): autodeploy, kubectl-set, kustomize-controller...
	ImageSetBy string `json:"imageSetBy,omitempty"`
	// Kustomization is namespace/name of the Flux Kustomization that
	// applies the Deployment (its kustomize.toolkit.fluxcd.io labels).
	Kustomization string `json:"kustomization,omitempty"`
}

// Policy is the ImagePolicy's side.
type Policy struct {
	Name        string `json:"name"` // namespace/name
	LatestImage string `json:"latestImage,omitempty"`
	Ready       bool   `json:"ready"`
	Message     string `json:"message,omitempty"`
	Suspended   bool   `json:"suspended,omitempty"`
}

// Repository is the ImageRepository's side.
type Repository struct {
	Name      string     `json:"name"` // namespace/name
	LastScan  *time.Time `json:"lastScan,omitempty"`
	TagCount  int64      `json:"tagCount"`
	Ready     bool       `json:"ready"`
	Message   string     `json:"message,omitempty"`
	Suspended bool       `json:"suspended,omitempty"`
	// ExcludedByAutodeploy are the exclusionList patterns rollbacks added
	// (removed once the policy ranks a newer good image above them).
	ExcludedByAutodeploy []gitops.Exclusion `json:"excludedByAutodeploy,omitempty"`
	// ExclusionsLost are the tags of those no longer in spec.exclusionList.
	ExclusionsLost []string `json:"exclusionsLost,omitempty"`
}

// GitOps is Flux's side when a Kustomization applies the Deployment from
// git: who else writes it, and whether git follows the policy.
type GitOps struct {
	Kustomization string `json:"kustomization"` // namespace/name
	Source        string `json:"source,omitempty"`
	LastApplied   string `json:"lastAppliedRevision,omitempty"`
	Ready         bool   `json:"ready"`
	Suspended     bool   `json:"suspended,omitempty"`
	Message       string `json:"message,omitempty"`
	// Automation is the ImageUpdateAutomation that writes the policy's tag
	// to that source; nil when none does.
	Automation *Automation `json:"automation,omitempty"`
	// PromotionPolicy, for a promoted service, is the ImagePolicy
	// autodeploy owns for it (config promote.imagePolicy), which git's
	// setter marker names.
	PromotionPolicy *PromotionPolicy `json:"promotionPolicy,omitempty"`
}

// PromotionPolicy is the ImagePolicy of a promotion under GitOps as
// status shows it.
type PromotionPolicy struct {
	Name   string `json:"name"` // namespace/name
	Exists bool   `json:"exists"`
	// Autodeploy: it carries autodeploy's record for the service; one
	// that exists without it is someone else's.
	Autodeploy bool   `json:"autodeploy"`
	Latest     string `json:"latest,omitempty"`
	Ready      bool   `json:"ready"`
	Message    string `json:"message,omitempty"`
	// InGit is the tag (@digest) the automation last wrote for it, ""
	// when it reports none.
	InGit string `json:"inGit,omitempty"`
}

// Automation is an ImageUpdateAutomation's side.
type Automation struct {
	Name           string     `json:"name"` // namespace/name
	Ready          bool       `json:"ready"`
	Suspended      bool       `json:"suspended,omitempty"`
	Message        string     `json:"message,omitempty"`
	LastPushCommit string     `json:"lastPushCommit,omitempty"`
	LastPushTime   *time.Time `json:"lastPushTime,omitempty"`
}

// NextAction is what the next run would do, from the same plan `run` makes.
// Promotion is one step of a pipeline as status sees it.
type Promotion struct {
	From string `json:"from"`
	// After is promote.after (or the source's soak).
	After time.Duration `json:"afterNanos"`
	// SourceImage is what the source's Deployment runs ("" when it does
	// not exist); SourceVerified is its verification there, with its soak.
	SourceImage    string           `json:"sourceImage,omitempty"`
	SourceVerified *deploy.SoakMark `json:"sourceVerified,omitempty"`
}

type NextAction struct {
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Reason string `json:"reason"`
	// Held: the service is held; OutsideWindow: a deploy its deploy
	// windows hold back.
	Held          bool `json:"held,omitempty"`
	OutsideWindow bool `json:"outsideWindow,omitempty"`
}

// Pod is one pod of the current or previous ReplicaSet.
type Pod struct {
	Name       string    `json:"name"`
	ReplicaSet string    `json:"replicaSet"` // current, previous
	Revision   int64     `json:"revision"`   // of its ReplicaSet
	Ready      string    `json:"ready"`      // ready/total containers
	Status     string    `json:"status"`     // phase, or the waiting reason
	Restarts   int32     `json:"restarts"`
	Created    time.Time `json:"created"`
	Node       string    `json:"node,omitempty"`
}

// OK reports whether s counts as healthy and up to date.
func (s Service) OK() bool {
	return s.State == StateHealthy && s.Sync == SyncUpToDate && s.Hold == nil && !s.Unverified && len(s.Problems) == 0
}
