package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// HoldOptions are the inputs of `autodeploy hold`.
type HoldOptions struct {
	Service string
	// All holds every configured service (a freeze).
	All    bool
	Reason string
	// For and Until end the hold (one of them, or neither: until resume).
	For   time.Duration
	Until string

	f      *Factory
	forSet bool
	until  time.Time // the end, from For or Until (Validate)
}

// Complete fills what the arguments give.
func (o *HoldOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, firstArg(args)
	o.forSet = cmd.Flags().Changed("for")
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *HoldOptions) Validate() error {
	if err := validServiceOrAll(o.Service, o.All); err != nil {
		return err
	}
	if strings.TrimSpace(o.Reason) == "" {
		what := o.Service
		if o.All {
			what = "a service"
		}
		return &flagError{fmt.Errorf("--reason is required and must not be blank: it is shown to whoever wonders why %s is not deployed", what)}
	}
	until, err := holdEnd(o.For, o.forSet, o.Until, time.Now(), time.Local)
	if err != nil {
		return &flagError{err}
	}
	o.until = until
	return nil
}

// holdEndLayouts are the local forms --until takes besides RFC 3339.
var holdEndLayouts = []string{"2006-01-02 15:04", "15:04"}

// minHold is the shortest hold, by --for or --until: runs come every few
// minutes.
const minHold = time.Minute

// holdEnd is when a hold placed at now ends: now + --for, or --until (RFC
// 3339, or a date and time or a time alone in loc, a time alone meaning
// its next occurrence); zero for neither.
func holdEnd(forD time.Duration, forSet bool, until string, now time.Time, loc *time.Location) (time.Time, error) {
	switch {
	case forSet && until != "":
		return time.Time{}, errors.New("give --for or --until, not both")
	case forSet && forD <= 0:
		return time.Time{}, fmt.Errorf("--for must be greater than zero (such as 2h or 30m), got %s", forD)
	case forSet && forD < minHold:
		return time.Time{}, fmt.Errorf("--for must be at least %s (a shorter hold ends before a run sees it), got %s", minHold, forD)
	case forSet:
		return now.Add(forD), nil
	case until == "":
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, until)
	if err != nil {
		for _, layout := range holdEndLayouts {
			if t, err = time.ParseInLocation(layout, until, loc); err == nil {
				if layout == "15:04" {
					ln := now.In(loc)
					t = time.Date(ln.Year(), ln.Month(), ln.Day(), t.Hour(), t.Minute(), 0, 0, loc)
					if !t.After(now) {
						t = t.AddDate(0, 0, 1)
					}
				}
				break
			}
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf(`invalid --until %q: use RFC 3339 (2026-12-03T18:00:00+01:00), or "2026-12-03 18:00" or "18:00" in the local time zone`, until)
	}
	if !t.After(now) {
		// MST is the zone's abbreviation, as date shows it: loc's own
		// name is "Local" for time.Local.
		return time.Time{}, fmt.Errorf("--until %s is in the past (now %s): give a later time, or --for", until, now.In(loc).Format("2006-01-02 15:04 MST"))
	}
	if t.Sub(now) == time.Duration(math.MaxInt64) {
		// Sub saturates past 292 years: every age of the hold would read
		// 106751d.
		return time.Time{}, fmt.Errorf("--until %s is more than 290 years away: for a hold without an end, give neither --for nor --until", until)
	}
	if d := t.Sub(now); d < minHold {
		return time.Time{}, fmt.Errorf("--until %s must be at least %s away (a shorter hold ends before a run sees it), got %s", until, minHold, d.Round(time.Second))
	}
	return t, nil
}

func newCmdHold(f *Factory, runF func(context.Context, *HoldOptions) error) *cobra.Command {
	o := &HoldOptions{}
	cmd := &cobra.Command{
		Use:   "hold (<service> | --all) --reason TEXT [--for DURATION | --until TIME]",
		Short: "Freeze a service: runs skip it until 'autodeploy resume' or the hold's end",
		Long: `Freeze a service without rolling it back (an incident, a maintenance window):
runs skip it, with the reason, until 'autodeploy resume <service>'. A run in
progress reads each Deployment again right before deploying it, so it skips
the service too; a rollout of it already under way is seen through (and
rolled back if it fails).

With --for or --until the hold ends by itself: from then on runs deploy the
service again, and the first run after the end removes the hold (logged,
notified as hold-expired). --until takes RFC 3339 (2026-12-03T18:00:00+01:00),
or "2026-12-03 18:00" or "18:00" in this machine's time zone (a time alone is
its next occurrence: today, or tomorrow once passed). The end must be at
least a minute away: a shorter hold ends before a run sees it. Holding a held
service again replaces the end (none without --for or --until).

--all holds every configured service, with the same reason and end (a
freeze); 'resume --all' releases them.`,
		Example: `  autodeploy hold api-gateway --reason "incident 42: DB migration"

  # a freeze that releases itself
  autodeploy hold api-gateway --reason "release freeze" --for 2h
  autodeploy hold api-gateway --reason "demo at 18:00" --until 19:00

  # a freeze of every service over the weekend
  autodeploy hold --all --reason "weekend freeze" --until "2026-12-07 08:00"`,
		Args:              serviceOrAllArgs,
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why the service is held (required)")
	cmd.Flags().BoolVar(&o.All, "all", false, "hold every configured service")
	cmd.Flags().DurationVar(&o.For, "for", 0, "end the hold after this long (such as 2h or 30m)")
	cmd.Flags().StringVar(&o.Until, "until", "", `end the hold at this time: RFC 3339, or "2006-01-02 15:04" or "15:04" in the local time zone`)
	return cmd
}

// Run places the hold (on every service with --all).
func (o *HoldOptions) Run(ctx context.Context) error {
	return eachService(ctx, o.f, o.Service, o.All, "hold", func(sess *session) error {
		h, err := sess.m.HoldUntil(ctx, sess.s, o.Reason, o.until)
		if err = warnOnly(o.f, err); err != nil {
			return err
		}
		until := ""
		if !h.Until.IsZero() {
			until = " until " + h.Until.Local().Format("2006-01-02 15:04 MST")
		}
		// Escaped: the reason may be pasted, the holder is the Lease's (anyone's
		// who may write it), and neither goes to the terminal raw.
		fmt.Fprintf(o.f.IO.Out, "%s held by %s%s: %s\n", sess.s.Name, ui.Escape(h.By), until, ui.Escape(h.Reason))
		return nil
	}, func(sess *session, names string) {
		if holder, held, err := locker(o.f, sess.cfg, sess.clients).Holder(ctx); err != nil {
			fmt.Fprintf(o.f.IO.ErrOut, "note: %s\n", ui.Escape(holderError(sess.clients, err).Error()))
		} else if held {
			fmt.Fprintf(o.f.IO.ErrOut, "note: a run is in progress (%s): it will not start a rollout of %s; one already under way is seen through\n", ui.Escape(holder.Name()), names)
		}
	})
}

// ResumeOptions are the inputs of `autodeploy resume`.
type ResumeOptions struct {
	Service string
	// All resumes every configured service.
	All          bool
	ForgetFailed bool

	f *Factory
}

// Complete fills what the arguments give.
func (o *ResumeOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, firstArg(args)
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *ResumeOptions) Validate() error { return validServiceOrAll(o.Service, o.All) }

func newCmdResume(f *Factory, runF func(context.Context, *ResumeOptions) error) *cobra.Command {
	o := &ResumeOptions{}
	cmd := &cobra.Command{
		Use:   "resume (<service> | --all)",
		Short: "Release a hold (and resume the Flux Kustomization a rollback suspended)",
		Long: `Release a service held by 'hold' or 'rollback': the next run deploys the
policy's image again, unless it is the image remembered as failed; with
--forget-failed that memory is cleared too (and a pending retry after a
registry failure, so the next run tries the image at once), and under Flux
GitOps every tag autodeploy excluded for the service in its ImageRepository
is released (others' exclusions stay). --all resumes every configured service
(the end of a 'hold --all' freeze).`,
		Args:              serviceOrAllArgs,
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "resume every configured service")
	cmd.Flags().BoolVar(&o.ForgetFailed, "forget-failed", false, "also forget the image remembered as failed (or to be retried), so runs may deploy it again")
	return cmd
}

// Run releases the hold (of every service with --all).
func (o *ResumeOptions) Run(ctx context.Context) error {
	return eachService(ctx, o.f, o.Service, o.All, "resume", func(sess *session) error {
		return o.resume(ctx, sess)
	}, nil)
}

func (o *ResumeOptions) resume(ctx context.Context, sess *session) error {
	res, err := sess.m.Resume(ctx, sess.s, o.ForgetFailed)
	if err = warnOnly(o.f, err); err != nil {
		return err
	}
	out, name := o.f.IO.Out, sess.s.Name
	if res.WasHeld {
		// The hold is the Deployment's annotation: anyone's who may
		// annotate it.
		fmt.Fprint(out, resumedLine(name, res.Hold))
	} else {
		fmt.Fprintf(out, "%s was not held\n", name)
	}
	if res.Resumed != "" {
		fmt.Fprintf(out, "  Flux Kustomization %s resumed\n", ui.Escape(res.Resumed))
	}
	if res.ReconcileEnabled != "" {
		fmt.Fprintf(out, "  Flux Kustomization %s applies the Deployment again (the rollback's reconcile: disabled annotation is removed)\n", ui.Escape(res.ReconcileEnabled))
	}
	for _, p := range res.Unexcluded {
		fmt.Fprintf(out, "  exclusion removed from ImageRepository %s\n", ui.Escape(p))
	}
	if res.UnexcludeError != "" {
		// Every exclusion recorded for the service, not one image's (issue
		// 17, item 8): a missing ImagePolicy was "the forgotten image".
		fmt.Fprintf(o.f.IO.ErrOut, "warning: could not remove the exclusions autodeploy recorded for %s's failed images: %s; once its ImagePolicy and ImageRepository can be read, run autodeploy resume %s --forget-failed again\n", name, ui.Escape(res.UnexcludeError), name)
	}
	if res.ForeignReconcile != "" {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: the Deployment has %s: %s, not set by autodeploy (no record): Flux never applies it; left as it is (%s removes it)\n", flux.KustomizeReconcileAnnotation, flux.ReconcileDisabled, res.ForeignReconcile)
	}
	if res.KustomizationGone != "" {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: Flux Kustomization %s, suspended by the rollback, no longer exists: nothing to resume\n", ui.Escape(res.KustomizationGone))
	}
	if res.ForgotFailed != "" {
		fmt.Fprintf(out, "  forgot failed image %s: runs may deploy it again\n", ui.Escape(res.ForgotFailed))
	}
	if res.StillFailed != "" {
		fmt.Fprintf(out, "  %s is still remembered as failed: runs skip it until the policy moves on (--forget-failed clears it)\n", ui.Escape(res.StillFailed))
	}
	return nil
}

// warnOnly prints an error that leaves the command's work done (the
// Deployment marked, its ReplicaSets not) as a warning, and returns the
// others.
func warnOnly(f *Factory, err error) error {
	var rm *deploy.ReplicaSetMarksError
	if errors.As(err, &rm) {
		// Escaped: it quotes the API server's answer.
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", ui.Escape(err.Error()))
		return nil
	}
	return err
}

// serviceOrAllArgs: one service name, or none with --all.
func serviceOrAllArgs(cmd *cobra.Command, args []string) error {
	if all, _ := cmd.Flags().GetBool("all"); all {
		if len(args) > 0 {
			return &flagError{errors.New("give a service name or --all, not both")}
		}
		return nil
	}
	return exactArgs(1, "exactly one service name (or --all)")(cmd, args)
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// validServiceOrAll is validServiceArg unless every service is meant.
func validServiceOrAll(name string, all bool) error {
	if all {
		return nil
	}
	return validServiceArg(name)
}

// eachService runs fn on the named service, or on every configured one
// with all, in one session (one log, one client). A failure does not stop
// the others: each is printed, and the first one's exit code is returned.
// after, when set, runs once at the end with the names acted on.
func eachService(ctx context.Context, f *Factory, name string, all bool, command string, fn func(*session) error, after func(sess *session, names string)) (err error) {
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	services := cfg.Services
	if !all {
		s, err := lookupService(cfg, name)
		if err != nil {
			return err
		}
		services = []config.Service{s}
	}
	if len(services) == 0 {
		fmt.Fprintf(f.IO.ErrOut, "no services configured in %s: nothing to %s\n", cfg.Path, command)
		return nil
	}
	sess, err := newSession(ctx, f, cfg, services[0], command)
	if err != nil {
		return err
	}
	defer sess.close(&err)
	var (
		first         error
		names, failed []string
	)
	for _, s := range services {
		sess.s = s
		err := sess.classify(fn(sess))
		if err == nil {
			names = append(names, s.Name)
			continue
		}
		if !all {
			return err
		}
		sess.failed(err)
		sess.logged = true
		// Escaped as the command's Error line is: errors quote the
		// cluster's text.
		fmt.Fprintf(f.IO.ErrOut, "error: %s: %s\n", s.Name, ui.Escape(err.Error()))
		failed = append(failed, s.Name)
		if first == nil {
			first = err
		}
	}
	if after != nil && len(names) > 0 {
		after(sess, strings.Join(names, ", "))
	}
	if first != nil {
		// Each failure was said above: the last line sums up (it said the
		// first one again), with the first one's exit code.
		return withCode(exitCodeFor(first), fmt.Errorf("%s failed for %d of %s (%s)", command, len(failed), ui.Count(len(services), "service", "services"), strings.Join(failed, ", ")))
	}
	return nil
}

// validServiceArg refuses a blank service name before the config is read.
func validServiceArg(name string) error {
	if strings.TrimSpace(name) == "" {
		return &flagError{fmt.Errorf("the service name must not be blank")}
	}
	return nil
}

// resumedLine is resume's line for a hold it released.
func resumedLine(name string, h deploy.Hold) string {
	return fmt.Sprintf("%s resumed (was held%s: %s)\n", name, ui.Escape(h.ByWhom()), ui.Escape(h.Reason))
}
