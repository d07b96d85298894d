// Package doctor checks, before cron does, everything a run needs: the
// config, the kubeconfig, the API server, Flux, each service's objects, the
// Flux Receiver that brings registry webhooks to them, the permissions of every command, the log and lock, the cron or systemd
// entry, and the trap in the seed's own setup (alphabetical order over
// sha-<hex> tags).
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/version"

	"github.com/autodeploy-dev/autodeploy/internal/access"
	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/status"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// Levels of a check.
const (
	OK   = "ok"
	Warn = "warn"
	Fail = "fail"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is what `doctor` prints; Failed is true when any check failed.
type Report struct {
	Checks []Check `json:"checks"`
	Failed bool    `json:"failed"`
}

func (r *Report) add(name, st, detail, fix string) {
	r.Checks = append(r.Checks, Check{Name: name, Status: st, Detail: detail, Fix: fix})
	if st == Fail {
		r.Failed = true
	}
}

// Host is where doctor looks for the schedule on this machine.
type Host struct {
	// Crontab returns the current user's crontab (crontab -l).
	Crontab func() (string, error)
	// CronFiles are system crontabs: /etc/crontab and /etc/cron.d/*.
	CronFiles []string
	// TimerFiles are systemd timers that may run autodeploy.
	TimerFiles []string
	// DefaultConfig is the config a run reads without --config or
	// AUTODEPLOY_CONFIG.
	DefaultConfig string
	// Watch reads the watch's lock record (nil: not looked at): a running
	// `autodeploy watch` makes the schedule's passes itself.
	Watch func() (lock.Holder, bool, error)
	// WatchLock names the watch's lock (<lockFile>.watch, or Lease
	// ns/<leaseName>-watch): deleting it retires a watch that died.
	WatchLock string
}

// Inputs is what doctor examines.
type Inputs struct {
	ConfigPath string
	Config     *config.Config
	ConfigErr  error
	Clients    *kube.Clients
	ClientsErr error
	Host       Host
	// Now is when the windows are judged (their next opening).
	Now time.Time
}

// Run performs every check it can; a check that cannot run because an
// earlier one failed is not reported. The checks of this host (the log,
// the lock file, the schedule) run whatever the cluster's state: an
// unreachable API server is one failed check, not the end of the report.
// ctx bounds every request: a signal stops doctor at once.
func Run(ctx context.Context, in Inputs) *Report {
	r := &Report{}
	if in.ConfigErr != nil {
		r.add("config", Fail, firstLine(in.ConfigErr.Error()), "autodeploy config validate "+in.ConfigPath+" lists every problem")
	} else {
		r.add("config", OK, fmt.Sprintf("%s: %s", in.ConfigPath, ui.Count(len(in.Config.Services), "service", "services")), "")
	}
	reached := cluster(ctx, r, in)
	if in.Config != nil {
		var c *kube.Clients
		if reached {
			c = in.Clients
		}
		files(ctx, r, in.Config, c)
		windows(r, in.Config, in.Now)
		schedule(r, in.Config, in.Host)
	}
	return r
}

// cluster checks the kubeconfig, the API server, Flux, the services and
// the permissions, stopping at the first that the others need; reached
// says whether the API server answered.
func cluster(ctx context.Context, r *Report, in Inputs) (reached bool) {
	if in.ClientsErr != nil {
		r.add("kubeconfig", Fail, in.ClientsErr.Error(), "pass --kubeconfig, or set KUBECONFIG")
		return false
	}
	c := in.Clients
	r.add("kubeconfig", OK, fmt.Sprintf("%s (server %s)", c.Source, kube.ShownServer(c.Config.Host)), "")
	v, err := serverVersion(ctx, c)
	if err != nil {
		fix := "check that the cluster runs and the kubeconfig's server and credentials are right"
		if apierrors.IsForbidden(err) && !kube.IsUnreachable(err) {
			// The credentials are taken, the path refused: RBAC.
			fix = "grant get on /version (the system:public-info-viewer ClusterRole grants it)"
		}
		detail := c.Classify(err).Error()
		if vr := (*versionRefused)(nil); errors.As(err, &vr) {
			// It names the server and kubeconfig itself: Classify's
			// AnswerError around it named them twice (issue 18, seventh
			// pass).
			detail = vr.Error()
		}
		r.add("api server", Fail, detail, fix)
		return false
	}
	r.add("api server", OK, fmt.Sprintf("reachable, Kubernetes %s", v.GitVersion), "")
	api, err := flux.Detect(ctx, c.Kube.Discovery())
	if err != nil {
		fix := "install Flux's image automation: flux install --components-extra=image-reflector-controller,image-automation-controller"
		var refused *flux.DiscoveryRefusedError
		if errors.As(err, &refused) {
			// RBAC, as run's exit 9 says, not a missing Flux.
			fix = "grant get on /api and /apis to the identity of the kubeconfig (the system:discovery ClusterRole, bound to system:authenticated by default)"
		} else if !errors.Is(err, flux.ErrNotInstalled) {
			fix = "see the error: it is not that Flux is missing"
		}
		r.add("flux", Fail, c.Classify(err).Error(), fix)
		return true
	}
	r.add("flux", OK, fmt.Sprintf("%s served at %s; using %s", flux.ImageGroup, strings.Join(api.Served, ", "), api.Version), "")
	if in.Config == nil {
		return true
	}
	cfg := in.Config
	objs, err := status.Collect(ctx, c.Kube, c.Dynamic, cfg.Services)
	if err != nil {
		r.add("services", Fail, c.Classify(err).Error(), "see the permissions below")
	} else {
		services(r, cfg, objs)
		receivers(ctx, r, cfg, c, api, objs)
	}
	permissions(ctx, r, cfg, c)
	return true
}

// versionRefused is the API's refusal of GET /version, said whole; it
// unwraps to the API's error, for the fix.
type versionRefused struct {
	err error
	msg string
}

func (e *versionRefused) Error() string { return e.msg }
func (e *versionRefused) Unwrap() error { return e.err }

// serverVersion is Discovery's ServerVersion with ctx: client-go's takes
// none, and waits out the whole request timeout after a signal.
func serverVersion(ctx context.Context, c *kube.Clients) (*version.Info, error) {
	body, err := c.Kube.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		var se apierrors.APIStatus
		if errors.As(err, &se) && !kube.IsUnreachable(err) {
			// The discovery client keeps only "unknown" of a refusal
			// (issue 18, review item 4): say what was refused, by whom.
			st := se.Status()
			msg := strings.TrimSpace(string(body))
			var answered metav1.Status
			if json.Unmarshal(body, &answered) == nil && answered.Kind == "Status" && answered.Message != "" {
				// The API's own Status: its message, not its JSON
				// (issue 18, sixth pass).
				msg = answered.Message
			}
			if st.Message != "" && st.Message != "unknown" {
				msg = st.Message
			}
			if len(msg) > 200 {
				msg = msg[:200] + "..."
			}
			// A 500 or 429 is no refusal (it was said "refused").
			said := fmt.Sprintf("answered GET /version with %d %s", st.Code, http.StatusText(int(st.Code)))
			if st.Code == http.StatusForbidden || st.Code == http.StatusUnauthorized {
				said = fmt.Sprintf("refused GET /version (%d %s)", st.Code, http.StatusText(int(st.Code)))
			}
			return nil, &versionRefused{err: err, msg: fmt.Sprintf("the Kubernetes API at %s (kubeconfig %s) %s: %s", kube.ShownServer(c.Config.Host), c.Source, said, ui.Escape(msg))}
		}
		return nil, err
	}
	var v version.Info
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("the API server's /version: %w", err)
	}
	return &v, nil
}

func services(r *Report, cfg *config.Config, objs status.Objects) {
	for _, s := range cfg.Services {
		name := "service " + s.Name
		d := objs.Deployments[s.Namespace+"/"+s.Deployment]
		u := objs.Policies[s.PolicyNamespace+"/"+s.PolicyName]
		// The same decision as run's (deploy.Plan): whatever run would
		// skip as a problem, doctor fails.
		in := deploy.Input{Service: s, Deployment: d, Source: deploy.SourceOf(cfg, s, objs.Deployments)}
		if d != nil {
			in.ReplicaSets = rollout.Owned(d, objs.ReplicaSets[s.Namespace])
		}
		var p flux.Policy
		if u != nil {
			p = flux.ParsePolicy(u)
			in.Policy = &p
		}
		if s.Promote != nil {
			// The policy it owns under GitOps, as the run reads it: one
			// that is not autodeploy's fails the plan.
			if ou := objs.Policies[s.Promote.PolicyNamespace+"/"+s.Promote.PolicyName]; ou != nil {
				in.Owned = &deploy.OwnedPolicy{Policy: flux.ParsePolicy(ou), Ours: gitops.OwnedBy(ou, s.Name)}
			}
		}
		dec := deploy.Plan(in)
		if d != nil {
			if detail, fix := deploy.UnreadableMarksNote(d); detail != "" {
				r.add(name, Warn, detail, fix)
			}
		}
		if dec.Problem {
			r.add(name, Fail, dec.Reason, dec.Fix)
			continue
		}
		switch {
		case s.Promote != nil:
			if chain, problem, fix := pipeline(cfg, s, objs); problem != "" {
				r.add(name, Fail, problem, fix)
			} else {
				r.add(name, OK, fmt.Sprintf("Deployment %s/%s runs %s; promoted from %s (after %s; %s): %s", s.Namespace, s.Deployment, dec.Current, s.Promote.From, s.Promote.After, chain, dec.Reason), "")
			}
		case u == nil:
			// Plan skips a held service before it looks at the policy:
			// this said "ImagePolicy / is not Ready: " (issue 18, tenth
			// pass). Runs fail it once it is resumed.
			r.add(name, Warn, fmt.Sprintf("ImagePolicy %s/%s not found (runs skip the service while it is held, and fail it once resumed)", s.PolicyNamespace, s.PolicyName), deploy.FixPolicyNotFound)
		case !p.Ready:
			r.add(name, Warn, fmt.Sprintf("ImagePolicy %s is not Ready: %s", p.Key(), p.Message), "flux get image policy "+p.Name+" -n "+p.Namespace)
		case p.Latest == "":
			r.add(name, Warn, fmt.Sprintf("ImagePolicy %s has selected no image yet", p.Key()), "flux get image policy "+p.Name+" -n "+p.Namespace)
		default:
			r.add(name, OK, fmt.Sprintf("Deployment %s/%s runs %s; ImagePolicy %s selects %s", s.Namespace, s.Deployment, dec.Current, p.Key(), p.Latest), "")
		}
		if trap, why := alphabeticalSHA(u, p.Latest); trap {
			r.add(name, Warn, why, `tag builds with a sortable number (e.g. main-<sha>-<unix time>) and use policy: {numerical: {order: asc}} with filterTags: {pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)', extract: '$ts'}`)
		}
		if dec.Kustomization != "" {
			gitOps(r, name, s, dec.Kustomization, objs)
		}
		if h, held := deploy.ParseHold(d.Annotations); held {
			r.add(name, Warn, fmt.Sprintf("held%s: %s", h.ByWhom(), h.Reason), "autodeploy resume "+s.Name)
		}
	}
}

// pipeline follows the promotions of s back to the ImagePolicy that feeds
// them: each promote.from must be a configured service whose Deployment
// exists and whose container resolves, and the first of the chain must
// have its ImagePolicy. Without them the target never gets an image,
// quietly ("nothing to promote"): a failure here, naming the service and
// the fix. chain says whence the images come when all resolve.
func pipeline(cfg *config.Config, s config.Service, objs status.Objects) (chain, problem, fix string) {
	seen := map[string]bool{s.Name: true}
	path := []string{s.Name}
	for cur := s; cur.Promote != nil; {
		from := cur.Promote.From
		src, ok := cfg.Service(from)
		switch {
		case !ok:
			return "", fmt.Sprintf("promote.from %q of %s is not a configured service", from, cur.Name), fmt.Sprintf("set promote.from of %s (line %d) to a service of the config", cur.Name, cur.Line)
		case seen[from]:
			// Load refuses a cycle; a Config built otherwise is told.
			return "", fmt.Sprintf("promotions go round in a cycle: %s -> %s", strings.Join(path, " <- "), from), "break the cycle: one service of it needs an imagePolicy"
		}
		seen[from], path = true, append(path, from)
		d := objs.Deployments[src.Namespace+"/"+src.Deployment]
		if d == nil {
			return "", fmt.Sprintf("Deployment %s/%s of %s (promote.from of %s) not found: nothing can be promoted", src.Namespace, src.Deployment, from, cur.Name),
				fmt.Sprintf("fix namespace/deployment of service %s in the config (line %d), or create the Deployment", from, src.Line)
		}
		if _, err := deploy.ResolveContainer(d, src.Container); err != nil {
			return "", fmt.Sprintf("%v: the image of %s (promote.from of %s) cannot be told", err, from, cur.Name),
				fmt.Sprintf("set container of service %s in the config (line %d)", from, src.Line)
		}
		if src.Promote == nil {
			key := src.PolicyNamespace + "/" + src.PolicyName
			if objs.Policies[key] == nil {
				return "", fmt.Sprintf("ImagePolicy %s of %s, where %s's images start, not found", key, from, s.Name),
					fmt.Sprintf("fix imagePolicy of service %s in the config (line %d), or create the ImagePolicy", from, src.Line)
			}
			return fmt.Sprintf("images from ImagePolicy %s through %s", key, strings.Join(reversed(path[1:]), " -> ")), "", ""
		}
		cur = src
	}
	return "", "", ""
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// windows checks each service's deploy windows: each can be judged (its
// cron parses, its zone loads), and can hold a rollout of the service
// (rolloutTimeout plus soak); a window that never can is a warning, as
// the service then never deploys through it. The next opening is said.
func windows(r *Report, cfg *config.Config, now time.Time) {
	for si, s := range cfg.Services {
		if len(s.DeployWindows) == 0 {
			continue
		}
		name := "windows " + s.Name
		need := s.RolloutTimeout + s.Soak
		failed, warned := false, false
		for i, w := range s.DeployWindows {
			where := windowPath(cfg, si, i)
			at := fmt.Sprintf("%s (line %d)", where, w.Line)
			if why := w.Invalid(); why != "" {
				r.add(name, Fail, at+": "+why, "fix the window in the config; autodeploy config validate "+cfg.Path+" lists every problem")
				failed = true
				continue
			}
			if why := w.CannotHold(now, need); why != "" {
				fix := fmt.Sprintf("fix the window's cron or lengthen its duration, or lower rolloutTimeout or soak of %s", s.Name)
				if strings.HasPrefix(where, "defaults.") {
					fix += ", or give " + s.Name + " its own deployWindows"
				}
				r.add(name, Warn, at+": "+why, fix)
				warned = true
			}
		}
		if failed || warned {
			continue
		}
		v := config.CanStart(s.DeployWindows, now, need)
		detail := fmt.Sprintf("windows parsed and zones loaded (%s); each holds a rollout of %s (rolloutTimeout plus soak)", ui.Count(len(s.DeployWindows), "window", "windows"), need)
		switch {
		case v.Open:
			detail += "; open now until " + config.FormatWindowTime(v.Closes, now, v.Closing)
		case !v.Next.IsZero():
			detail += "; next opens " + config.FormatWindowTime(v.Next, now, v.Window)
		}
		r.add(name, OK, detail, "")
	}
}

// windowPath names the i-th window of the si-th service as the config
// spells it: the defaults' when the service has none of its own.
func windowPath(cfg *config.Config, si, i int) string {
	d, own := cfg.Defaults.DeployWindows, cfg.Services[si].DeployWindows
	if i < len(d) && len(d) == len(own) && d[i].Line == own[i].Line {
		return fmt.Sprintf("defaults.deployWindows[%d]", i)
	}
	return fmt.Sprintf("services[%d].deployWindows[%d]", si, i)
}

// gitOps checks that git follows the policy of a service Flux applies
// from git: without an ImageUpdateAutomation writing its tag, Flux
// reverts every deploy at its next reconcile.
func gitOps(r *Report, name string, s config.Service, k string, objs status.Objects) {
	if objs.GitOpsProblem != "" {
		r.add(name, Fail, objs.GitOpsProblem, "apply `autodeploy manifests rbac` for this kubeconfig's user or ServiceAccount")
		return
	}
	if s.Promote != nil {
		ownedPolicy(r, name, s, objs)
	}
	policy, policyLabels := status.GitPolicy(s, objs)
	g := flux.ResolveGitOps(flux.ParseRef(k), objs.Kustomizations[k], objs.Automations[policy.Namespace], policy, policyLabels)
	problem := g.Problem(policy.String())
	switch {
	case !g.Found:
		r.add(name, Warn, problem, "fix or remove the Deployment's "+flux.KustomizationNameLabel+" labels")
	case g.Automation == nil:
		r.add(name, Fail, problem, "flux create image update ... --git-repo-ref="+g.K.Source.Name+"; see fluxcd.io/flux/guides/image-update/")
	case problem != "":
		r.add(name, Warn, problem, "flux get image update -n "+g.Automation.Namespace)
	default:
		r.add(name, OK, fmt.Sprintf("applied from git by Kustomization %s; ImageUpdateAutomation %s writes ImagePolicy %s/%s's tag to %s %s, so git follows autodeploy's deploys",
			k, g.Automation.Ref, policy.Namespace, policy.Name, g.K.SourceKind, g.K.Source), "")
	}
}

// ownedPolicy checks the ImagePolicy autodeploy owns for a promoted
// service applied from git: absent is fine (the first promotion creates
// it), autodeploy's and Ready is fine; one without autodeploy's record is
// someone else's and fails (the plan says so too); not Ready warns.
func ownedPolicy(r *Report, name string, s config.Service, objs status.Objects) {
	ref := flux.Ref{Namespace: s.Promote.PolicyNamespace, Name: s.Promote.PolicyName}
	marker := fmt.Sprintf(`the target's image line in git must carry # {"$imagepolicy": "%s:%s"}; the ImagePolicy must not be in git (autodeploy manifests promotion)`, ref.Namespace, ref.Name)
	u := objs.Policies[ref.String()]
	switch {
	case u == nil:
		r.add(name, OK, fmt.Sprintf("ImagePolicy %s, the promotion's, does not exist yet: created at the first promotion; %s", ref, marker), "")
	case !gitops.OwnedBy(u, s.Name):
		r.add(name, Fail, fmt.Sprintf("ImagePolicy %s %s (no label %s: %s with annotation %s: %s)", ref, gitops.ErrForeignPolicy, gitops.LabelManagedBy, gitops.ManagedByAutodeploy, gitops.AnnPromotionOf, s.Name), gitops.ForeignPolicyFix(s.Name, ref))
	default:
		p := flux.ParsePolicy(u)
		if !p.Ready {
			r.add(name, Warn, fmt.Sprintf("ImagePolicy %s, the promotion's, is not Ready: %s", ref, p.Message), "flux get image policy "+ref.Name+" -n "+ref.Namespace)
			return
		}
		r.add(name, OK, fmt.Sprintf("ImagePolicy %s, the promotion's, is autodeploy's and selects %s; %s", ref, p.Latest, marker), "")
	}
}

var shaTag = regexp.MustCompile(`^sha-[0-9a-f]+$`)

// alphabeticalSHA spots the seed's trap: alphabetical order over
// sha-<hex> tags picks the greatest hash, not the newest build
// (fluxcd/flux2#3449).
func alphabeticalSHA(u *unstructured.Unstructured, latest string) (bool, string) {
	if u == nil {
		// No policy (a promoted service, or a missing one): doctor
		// panicked on every config with a promotion (TestPipelineCheck).
		return false, ""
	}
	if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "policy", "alphabetical"); !ok {
		return false, ""
	}
	pattern, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern")
	tag := latest[strings.LastIndex(latest, ":")+1:]
	if strings.Contains(pattern, "sha-") || shaTag.MatchString(tag) {
		return true, "alphabetical policy over sha-<hex> tags: the greatest hash is not the newest build (fluxcd/flux2#3449); autodeploy refuses the downgrades this causes, but may skip new builds"
	}
	return false, ""
}

// permissions asks the API server, with SelfSubjectAccessReviews, whether
// the kubeconfig's user may do everything each command does.
func permissions(ctx context.Context, r *Report, cfg *config.Config, c *kube.Clients) {
	missing := map[string][]string{} // command -> missing verbs
	optional := []string{}
	for _, chk := range access.Checks(cfg, false) {
		ru := chk.Rule
		ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: chk.Namespace, Verb: ru.Verb, Group: ru.Group, Resource: ru.Resource},
		}}
		res, err := c.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, ssar, metav1.CreateOptions{})
		if err != nil {
			r.add("permissions", Fail, "cannot check permissions: "+c.Classify(err).Error(), "")
			return
		}
		if res.Status.Allowed {
			continue
		}
		what := fmt.Sprintf("%s %s in %s", ru.Verb, qualified(ru), chk.Namespace)
		if ru.Resource == "kustomizations" && ru.Verb == "patch" {
			optional = append(optional, what)
			continue
		}
		for _, cmd := range ru.Commands {
			missing[cmd] = append(missing[cmd], what)
		}
	}
	fix := "apply `autodeploy manifests rbac` for this kubeconfig's user or ServiceAccount"
	if len(missing) == 0 {
		r.add("permissions", OK, "every command's permissions are granted", "")
	}
	cmds := make([]string, 0, len(missing))
	for k := range missing {
		cmds = append(cmds, k)
	}
	sort.Strings(cmds)
	for _, cmd := range cmds {
		r.add("permissions", Fail, fmt.Sprintf("%s cannot: %s", cmd, strings.Join(missing[cmd], "; ")), fix)
	}
	if len(optional) > 0 {
		r.add("permissions", Warn, "resume cannot release a hold placed by an earlier version's rollback --suspend-flux: "+strings.Join(optional, "; "), fix)
	}
}

func qualified(r access.Rule) string {
	if r.Group == "" {
		return r.Resource
	}
	return r.Resource + "." + r.Group
}

// files checks that the log and the lock can be written; c is nil when
// the API server did not answer.
func files(ctx context.Context, r *Report, cfg *config.Config, c *kube.Clients) {
	if cfg.Log.File == config.LogToStdout {
		r.add("log", OK, "standard output", "")
	} else if why := config.LogFileProblem(cfg.Log.File); why != "" {
		// Before check's open, which a FIFO would block.
		r.add("log", Fail, cfg.Log.File+" "+why, "set log.file in the config to a regular file")
	} else if err := runlog.Writable(cfg.Log); err != nil {
		// What run, hold and rollback refuse with: a real write, which
		// an empty file's creation on a full file system is not.
		r.add("log", Fail, err.Error(), "free space on its file system, run as a user who may write "+filepath.Dir(cfg.Log.File)+", or change log.file in the config")
	} else {
		r.add("log", OK, cfg.Log.File+" is writable", "")
	}
	if cfg.Lock.Type == config.LockLease {
		lease(ctx, r, cfg, c)
	} else {
		check(r, "lock", cfg.LockFile)
	}
	if cfg.Metrics.TextfileDir != "" {
		textfileDir(r, cfg.Metrics.TextfileDir)
	}
	// A health URL or credential runs cannot read stops every deploy of
	// the service (deploy's preflight): say it here, in this environment.
	for _, s := range cfg.Services {
		if s.Health == nil || (!s.Health.Authorization.Set() && s.Health.URL.Env == "" && s.Health.URL.File == "") {
			continue
		}
		if err := health.Preflight(*s.Health); err != nil {
			r.add("health "+s.Name, Fail, err.Error(), config.SecretFix(err))
		} else {
			r.add("health "+s.Name, OK, "the URL and Authorization header can be read", "")
		}
	}
	// A notification URL or secret runs cannot read loses every
	// notification of the channel (only logged): said here, as the
	// health check's is. An inline URL Load checked.
	for _, n := range cfg.Notify {
		if n.URL.Env == "" && n.URL.File == "" && n.HMAC.Env == "" && n.HMAC.File == "" {
			continue
		}
		if err := notify.Preflight(n); err != nil {
			r.add("notify "+n.Name, Fail, err.Error(), config.SecretFix(err))
		} else {
			r.add("notify "+n.Name, OK, "the URL and secret can be read", "")
		}
	}
}

// lease checks that runs can take the Lease: a server-side dry run of its
// creation (validated and admitted, never stored) fails as a run's would,
// on a leaseNamespace that does not exist above all, where every run fails.
func lease(ctx context.Context, r *Report, cfg *config.Config, c *kube.Clients) {
	ns, name := cfg.Lock.LeaseNamespace, cfg.Lock.LeaseName
	what := fmt.Sprintf("Lease %s/%s", ns, name)
	if c == nil {
		r.add("lock", Warn, what+": not checked, the API server did not answer", "see the api server check")
		return
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	_, err := c.Kube.CoordinationV1().Leases(ns).Create(ctx, l, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil:
		r.add("lock", OK, what+" can be created", "")
	case apierrors.IsAlreadyExists(err):
		r.add("lock", OK, what+" exists", "")
	case apierrors.IsNotFound(err):
		r.add("lock", Fail, fmt.Sprintf("%s: namespace %s does not exist, so every run fails to take the lock", what, ns),
			fmt.Sprintf("set lock.leaseNamespace in %s to an existing namespace, or kubectl create namespace %s", cfg.Path, ns))
	case apierrors.IsForbidden(err):
		r.add("lock", Fail, fmt.Sprintf("%s cannot be created: %v", what, err), "apply `autodeploy manifests rbac` for this kubeconfig's user or ServiceAccount")
	default:
		r.add("lock", Fail, fmt.Sprintf("%s: %v", what, c.Classify(err)), "")
	}
}

// check tells whether path can be created or appended to, without leaving a
// trace: a temporary file in its directory, or the nearest existing parent.
func check(r *Report, name, path string) {
	if file := config.ThroughAFile(path); file != "" {
		// No user may write in a file: the fix was "run as a user who may
		// write <the file>" (issue 18, ninth pass).
		r.add(name, Fail, fmt.Sprintf("%s goes through %s, which is a file, not a directory", path, strconv.Quote(file)), "change the path in the config to one in a directory")
		return
	}
	dir := filepath.Dir(path)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".autodeploy-doctor-*")
	if err != nil {
		r.add(name, Fail, fmt.Sprintf("%s is not writable: %v", path, err), "run as a user who may write "+filepath.Dir(path)+", or change the path in the config")
		return
	}
	f.Close()
	os.Remove(f.Name())
	// A named pipe opened to write waits for a reader (doctor hung on a
	// lockFile that was one): looked at first, and opened without blocking.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		r.add(name, Fail, fmt.Sprintf("%s is %s, not a regular file", path, config.FileKind(st.Mode())), "change the path in the config to a file")
		return
	}
	if fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NONBLOCK, 0); err != nil && !os.IsNotExist(err) {
		r.add(name, Fail, fmt.Sprintf("%s exists but cannot be written: %v", path, err), "fix its owner or mode")
		return
	} else if err == nil {
		fh.Close()
	}
	r.add(name, OK, path+" is writable", "")
}

// textfileDir checks node_exporter's textfile directory: a run writes
// autodeploy.prom there through a temporary file, and one naming a file or
// nothing lost every run's metrics to a warning in the log, config validate
// and doctor silent (issue 18, fourth pass).
func textfileDir(r *Report, dir string) {
	fix := "create it (node_exporter's --collector.textfile.directory) or change metrics.textfileDir in the config"
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		r.add("metrics", Fail, fmt.Sprintf("metrics.textfileDir: %v", err), fix)
		return
	case !st.IsDir():
		r.add("metrics", Fail, fmt.Sprintf("metrics.textfileDir %s is not a directory", dir), fix)
		return
	}
	f, err := os.CreateTemp(dir, ".autodeploy-doctor-*")
	if err != nil {
		r.add("metrics", Fail, fmt.Sprintf("metrics.textfileDir %s is not writable: %v", dir, err), "run as a user who may write it, or change metrics.textfileDir in the config")
		return
	}
	f.Close()
	os.Remove(f.Name())
	r.add("metrics", OK, dir+" is writable", "")
}

// schedule looks for a cron or systemd entry that runs `autodeploy run` and
// compares its schedule with the config's.
func schedule(r *Report, cfg *config.Config, h Host) {
	fix := "install one: autodeploy manifests cron > /etc/cron.d/autodeploy (or manifests systemd)"
	if never := cfg.NeverFires(time.Now()); never != "" {
		r.add("schedule", Warn, "the config's "+never, "fine to disable autodeploy; else change schedule in "+cfg.Path)
	}
	var found []string
	if h.Crontab != nil {
		if out, err := h.Crontab(); err == nil && cronTab(r, cfg, h, "crontab", out, false) {
			found = append(found, "crontab")
		}
	}
	for _, f := range h.CronFiles {
		if b, ok := scheduleFile(r, f, "cron"); ok && cronTab(r, cfg, h, f, string(b), true) {
			found = append(found, f)
		}
	}
	want, _ := manifests.OnCalendar(cfg.Schedule)
	for _, f := range h.TimerFiles {
		b, ok := scheduleFile(r, f, "systemd")
		if !ok {
			continue
		}
		m := regexp.MustCompile(`(?m)^OnCalendar=(.+)$`).FindStringSubmatch(string(b))
		if m == nil {
			continue
		}
		found = append(found, f)
		if strings.TrimSpace(m[1]) == want {
			r.add("schedule", OK, fmt.Sprintf("%s: OnCalendar=%s, as configured", f, want), "")
		} else {
			r.add("schedule", Warn, fmt.Sprintf("%s: OnCalendar=%s but the config's schedule %q is %s", f, strings.TrimSpace(m[1]), cfg.Schedule, want), "regenerate with autodeploy manifests systemd")
		}
	}
	watching := false // a watch's line says what schedules this host
	if h.Watch != nil {
		if hd, held, err := h.Watch(); err == nil {
			if st, ok := watch.ParseRecord(hd.Command); ok {
				who := watch.Who(hd)
				watching = true
				if held {
					r.add("schedule", OK, fmt.Sprintf("autodeploy watch runs (%s, since %s): it deploys each policy change and makes a full pass at every tick of %q", who, st.Since.Format(time.RFC3339), cfg.Schedule), "")
				} else {
					r.add("schedule", Warn, fmt.Sprintf("an autodeploy watch (%s) stopped without releasing its lock (killed or crashed)", who),
						fmt.Sprintf("see journalctl -u autodeploy-watch (or kubectl logs), then systemctl restart autodeploy-watch (or, if it is retired, delete %s)", h.WatchLock))
				}
			}
		}
	}
	if len(found) == 0 && !watching {
		r.add("schedule", Warn, "no crontab, systemd timer or autodeploy watch runs autodeploy on this host (fine if it runs in the cluster)", fix)
	}
}

// scheduleFile reads a cron file or timer, as config.ReadFile reads: a
// named pipe in /etc/cron.d blocked doctor's plain read forever, SIGTERM
// unheard, and a device never ended (issue 18, fourth pass). What is not a
// regular file is a warning: cron (Debian's skips it) and systemd run
// nothing from it. One that went away since the listing, or that this user
// may not read (another package's, mode 0600), is passed over, as before.
func scheduleFile(r *Report, path, reader string) ([]byte, bool) {
	b, err := config.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil, false
	case err != nil:
		r.add("schedule", Warn, fmt.Sprintf("%s not read: %v", path, err), fmt.Sprintf("%s runs nothing from it: remove it, or make it a regular file", reader))
		return nil, false
	}
	return b, true
}

func firstLine(s string) string {
	l, rest, _ := strings.Cut(s, "\n")
	if rest != "" {
		l += " (and more)"
	}
	return l
}
