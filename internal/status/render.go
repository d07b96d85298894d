package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fatih/color"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// TextOptions shape the human output.
type TextOptions struct {
	// Details shows every service's block, not only those needing attention.
	Details bool
	// Wide shows full image references instead of tags.
	Wide bool
}

var (
	green  = ui.Green.SprintFunc()
	yellow = ui.Yellow.SprintFunc()
	red    = ui.Red.SprintFunc()
	bold   = ui.NewColor(color.Bold).SprintFunc()
	faint  = ui.NewColor(color.Faint).SprintFunc()
)

func stateColor(s string) func(...any) string {
	switch s {
	case StateHealthy, SyncUpToDate:
		return green
	case StateProgressing, StatePaused, SyncBehind, SyncAhead, "held", "unverified":
		return yellow
	case StateFailed, StateMissing, StateDegraded:
		return red
	}
	return fmt.Sprint
}

// WriteText renders r for a person in an 80-column terminal: a table with a
// line per service, a block for each service that needs attention, then
// the last and next runs.
//
// Every string of r is escaped first (ui.Escaped): annotations, the
// Lease's holder, pods' and Flux objects' messages and the log are
// anyone's who may write them, and must not reach the terminal raw.
func WriteText(w io.Writer, r *Report, o TextOptions) error {
	r = ui.Escaped(r)
	now := r.GeneratedAt
	rows := [][]string{{"SERVICE", "STATE", "READY", "IMAGE", "FLUX"}}
	for _, s := range r.Services {
		ready, img := "-", "-"
		if s.Rollout != nil {
			ready = fmt.Sprintf("%d/%d", s.Rollout.Ready, s.Rollout.Desired)
			img = shortImage(s.Rollout.Image, o.Wide)
		}
		rows = append(rows, []string{s.Name, stateColor(s.State)(s.State), ready, img, fluxColumn(s, now, o.Wide)})
	}
	if err := ui.Table(w, "", rows); err != nil {
		return err
	}
	for _, s := range r.Services {
		if o.Details || !s.OK() {
			fmt.Fprintln(w)
			writeService(w, s, now, o)
		}
	}
	if len(r.Pipelines) > 0 {
		fmt.Fprintf(w, "\n%s\n", bold("Pipelines"))
		for _, p := range r.Pipelines {
			writePipeline(w, p, now, o)
		}
	}
	fmt.Fprintln(w)
	writeRuns(w, r, now)
	if len(r.Log) > 0 {
		fmt.Fprintf(w, "\n%s\n", bold(fmt.Sprintf("Log (last %s)", ui.Count(len(r.Log), "line", "lines"))))
		for _, l := range r.Log {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return nil
}

// fluxColumn says in a few words how the Deployment stands against its
// policy, and any mark autodeploy keeps.
func fluxColumn(s Service, now time.Time, wide bool) string {
	var parts []string
	switch s.Sync {
	case SyncUpToDate:
		parts = append(parts, green("up to date"))
	case SyncBehind:
		if p := s.Promotion; p != nil {
			parts = append(parts, yellow("behind "+p.From+": "+shortImage(p.SourceImage, wide)))
			break
		}
		parts = append(parts, yellow("behind: "+shortImage(s.Policy.LatestImage, wide)))
	case SyncAhead:
		parts = append(parts, yellow("ahead of "+shortImage(s.Policy.LatestImage, wide)))
	default:
		parts = append(parts, red("unknown"))
	}
	if s.Hold != nil {
		parts = append(parts, yellow("held"))
	}
	if s.Unverified {
		parts = append(parts, yellow("unverified"))
	}
	if k := s.Soak; k != nil {
		parts = append(parts, soakState(*k, now))
	}
	return strings.Join(parts, ", ")
}

func writeService(w io.Writer, s Service, now time.Time, o TextOptions) {
	fmt.Fprintf(w, "%s %s\n", bold(s.Name), faint(fmt.Sprintf("(deployment %s/%s)", s.Namespace, s.Deployment)))
	row := func(label, format string, args ...any) {
		writeRow(w, "  ", label, fmt.Sprintf(format, args...))
	}
	for _, p := range s.Problems {
		row("problem", "%s", red(p))
	}
	if ro := s.Rollout; ro != nil {
		row("rollout", "%s: %s", stateColor(s.State)(ro.State), ro.Message)
		switch {
		case ro.ImageSetBy != "" && ro.Kustomization != "":
			row("image", "%s (set by %s; applied by Flux Kustomization %s)", ro.Image, ro.ImageSetBy, ro.Kustomization)
		case ro.ImageSetBy != "":
			row("image", "%s (set by %s)", ro.Image, ro.ImageSetBy)
		case ro.Kustomization != "":
			row("image", "%s (applied by Flux Kustomization %s)", ro.Image, ro.Kustomization)
		default:
			row("image", "%s", ro.Image)
		}
		if ro.RolledOutAt != nil {
			row("revision", "%d, rolled out %s", ro.Revision, ago(now, *ro.RolledOutAt))
		} else {
			row("revision", "%d", ro.Revision)
		}
		if ro.ChangeCause != "" {
			row("cause", "%s", fit(ro.ChangeCause))
		}
	}
	if p := s.Policy; p != nil {
		state := fluxState(p.Ready, p.Suspended, p.Message)
		latest := p.LatestImage
		if latest == "" {
			latest = "no image yet"
		}
		row("policy", "%s -> %s (%s)", p.Name, shortImage(latest, o.Wide), state)
	}
	if rp := s.Repository; rp != nil {
		scan := "never scanned"
		if rp.LastScan != nil {
			scan = "scanned " + ago(now, *rp.LastScan)
		}
		state := fluxState(rp.Ready, rp.Suspended, rp.Message)
		row("repository", "%s: %s, %s (%s)", rp.Name, scan, ui.Count(rp.TagCount, "tag", "tags"), state)
		for _, e := range rp.ExcludedByAutodeploy {
			if e.Service != s.Name { // this service's are levers, below
				row("excluded", "%s by autodeploy %s (%s rolled back): removed once the policy ranks a newer good image above it", e.Tag, ago(now, e.At), e.Service)
			}
		}
	}
	if g := s.GitOps; g != nil {
		state := fluxState(g.Ready, g.Suspended, g.Message)
		if g.Source == "" {
			state = yellow("not found")
		}
		applied := ""
		if g.LastApplied != "" {
			applied = ", applied " + g.LastApplied
		}
		row("git", "Kustomization %s (%s%s)", g.Kustomization, state, applied)
		if a := g.Automation; a != nil {
			st := fluxState(a.Ready, a.Suspended, a.Message)
			push := "no push yet"
			if a.LastPushCommit != "" {
				push = "last push " + shortCommit(a.LastPushCommit)
				if a.LastPushTime != nil {
					push += " " + ago(now, *a.LastPushTime)
				}
			}
			row("automation", "ImageUpdateAutomation %s writes the tag (%s, %s)", a.Name, st, push)
		} else if g.Source != "" {
			row("automation", "%s", yellow("none writes the policy's tag to "+g.Source))
		}
		if pp := g.PromotionPolicy; pp != nil {
			row("promotion", "%s", promotionPolicyRow(pp))
		}
	}
	for _, l := range s.Levers {
		// Every lever on Flux that holds for the service, and what takes
		// it away (internal/gitops).
		whose := "autodeploy's"
		if !l.Ours {
			whose = yellow("not autodeploy's")
		}
		row("flux lever", "%s on %s, %s: %s; cleared by %s", l.Kind, l.Object, whose, l.Detail, l.Clear)
	}
	if h := s.Hold; h != nil {
		end := ""
		if !h.Until.IsZero() {
			at := clock(h.Until)
			if d := h.Until.Sub(now); d >= 24*time.Hour || d <= -24*time.Hour {
				at = h.Until.UTC().Format("2006-01-02 15:04 UTC")
			}
			if h.Expired(now) {
				end = fmt.Sprintf(" until %s (expired %s: the next run releases it)", at, ago(now, h.Until))
			} else {
				end = fmt.Sprintf(" until %s (in %s)", at, until(now, h.Until))
			}
		}
		row("held", "%s", yellow(fmt.Sprintf("%s%s: %s", strings.TrimSpace(h.ByWhom()+" "+recorded(now, h.At)), end, h.Reason)))
	}
	if f := s.Failed; f != nil {
		row("failed", "%s %s: %s (resume --forget-failed clears it)", f.Image, recorded(now, f.At), fit(f.Reason))
		if f.RollbackError != "" {
			row("rollback", "%s", red("could not be applied: "+fit(f.RollbackError)))
		}
	}
	if r := s.Retry; r != nil {
		// The cause and the cluster's own words ("exceeded quota: pods=3",
		// "0/2 nodes are available"): what to fix before the retry.
		row("retry", "%s failed because of %s (attempt %d); tried again after %s (resume --forget-failed: at the next run)",
			r.Image, rollout.Cause(r.Cause).Who(), r.Attempts, r.After.UTC().Format("15:04:05 UTC"))
		why := r.Evidence
		if why == "" {
			why = fit(r.Reason)
		}
		row("why", "%s", why)
	}
	if s.Unverified {
		row("unverified", "%s", yellow("set by autodeploy, not verified yet: the next run verifies it"))
	}
	if p := s.Promotion; p != nil {
		switch v := p.SourceVerified; {
		case p.SourceImage == "":
			row("promoted", "from %s, whose Deployment does not exist", p.From)
		case v == nil:
			row("promoted", "from %s, which runs %s, not verified there", p.From, p.SourceImage)
		default:
			soak := "no soak"
			if v.Until.After(v.VerifiedAt) {
				soak = soakState(*v, now)
			}
			row("promoted", "from %s, which runs %s, verified there %s (%s); after %s", p.From, p.SourceImage, ago(now, v.VerifiedAt), soak, p.After)
		}
	}
	if k := s.Soak; k != nil {
		row("soak", "%s: %s, verified %s", k.Image, soakState(*k, now), ago(now, k.VerifiedAt))
	}
	if win := s.Window; win != nil {
		state := "closed"
		if win.Open {
			state = "open until " + win.Closes
		}
		next := "no window opens again"
		if win.NextOpen != nil {
			next = fmt.Sprintf("next opens %s (in %s)", win.Next, until(now, *win.NextOpen))
		}
		row("window", "%s, %s", state, next)
	}
	if n := s.NextRun; n != nil {
		switch n.Action {
		case "deploy":
			row("next run", "deploys %s", n.Target)
		case "verify":
			row("next run", "verifies %s", n.Target)
		case "up-to-date":
			row("next run", "nothing to do")
		default:
			row("next run", "skips it: %s", n.Reason)
		}
	}
	if len(s.Pods) > 0 {
		fmt.Fprintln(w, "  pods")
		rows := [][]string{{"NAME", "REV", "READY", "STATUS", "RESTARTS", "AGE", "NODE"}}
		for _, p := range s.Pods {
			st := p.Status
			if st != "Running" && st != "Succeeded" {
				st = red(st)
			}
			rows = append(rows, []string{p.Name, fmt.Sprint(p.Revision), p.Ready, st, fmt.Sprint(p.Restarts), age(now, p.Created), p.Node})
		}
		_ = ui.Table(w, "  ", rows)
	}
}

// writePipeline writes one chain: a line naming it, then each stage with
// what it runs, since when and its soak, and for each stage after the
// first, the promotion into it.
func writePipeline(w io.Writer, p Pipeline, now time.Time, o TextOptions) {
	names := make([]string, len(p.Stages))
	for i, st := range p.Stages {
		names[i] = st.Service
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(names, " -> "))
	for _, st := range p.Stages {
		runs := "no Deployment"
		if st.Image != "" {
			runs = shortImage(st.Image, o.Wide)
			if st.Since != nil {
				runs += " since " + ago(now, *st.Since)
			}
			runs += ", " + stageSoak(st, now)
		}
		if st.Policy != "" {
			runs += "; from ImagePolicy " + st.Policy
		}
		writeRow(w, "    ", st.Service, runs)
		if pr := st.Promotion; pr != nil {
			writeRow(w, "    ", "", "next: "+promotionLine(*pr, now, o))
		}
	}
}

func stageSoak(st Stage, now time.Time) string {
	switch st.Soak {
	case StageSoaking, StageSoaked:
		return soakState(deploy.SoakMark{Until: *st.SoakUntil, Passed: st.Soak == StageSoaked}, now)
	case StageVerified:
		return green("verified")
	case StageUnverified:
		return yellow("not verified yet")
	case StageFailed:
		return red("runs its failed image")
	}
	return yellow("not verified by autodeploy")
}

func promotionLine(p StagePromotion, now time.Time, o TextOptions) string {
	cand := shortImage(p.Candidate, o.Wide)
	switch p.State {
	case PromotionUpToDate:
		return green("up to date with " + p.From)
	case PromotionDue:
		return fmt.Sprintf("the next run promotes %s from %s", cand, p.From)
	case PromotionWaiting, PromotionSoakPending:
		if p.Due != nil {
			return fmt.Sprintf("%s from %s at %s (in %s): %s", cand, p.From, clock(*p.Due), until(now, *p.Due), p.Reason)
		}
	case PromotionOutsideWindow:
		return yellow(fmt.Sprintf("%s from %s waits for a deploy window: %s", cand, p.From, p.Reason))
	case PromotionFailed, PromotionHeld:
		return red(fmt.Sprintf("%s: %s", p.State, p.Reason))
	}
	return yellow(fmt.Sprintf("%s: %s", p.State, p.Reason))
}

// writeRow writes "label value", wrapping the value at word boundaries so
// that it fits an 80-column window, continuation lines aligned under it.
func writeRow(w io.Writer, indent, label, value string) {
	prefix := fmt.Sprintf("%s%-10s ", indent, label)
	width := 80 - len(prefix)
	line, n := "", 0
	for _, word := range strings.Fields(value) {
		wl := ui.Width(word)
		if n > 0 && n+1+wl > width {
			fmt.Fprintln(w, prefix+line)
			prefix, line, n = strings.Repeat(" ", len(prefix)), "", 0
		}
		if n > 0 {
			line += " "
			n++
		}
		line += word
		n += wl
	}
	fmt.Fprintln(w, strings.TrimRight(prefix+line, " "))
}

func writeRuns(w io.Writer, r *Report, now time.Time) {
	row := func(label, format string, args ...any) { writeRow(w, "", label, fmt.Sprintf(format, args...)) }
	switch lr := r.LastRun; {
	case lr != nil:
		took := "still running or cut short"
		if lr.Finished != nil {
			took = "took " + lr.Duration.Round(100*time.Millisecond).String()
		}
		result := lr.Result
		switch result {
		case "ok":
			result = green(result)
		case "failed":
			result = red(result)
		case "deadline":
			result = yellow("stopped at its deadline (runDeadline)")
		default:
			result = yellow(result)
		}
		row("last run", "%s (%s), %s, %s: %s", ago(now, lr.Started), clock(lr.Started), took, result, outcomeSummary(lr.Outcomes))
		for _, w := range lr.WarningMessages {
			row("warning", "%s", yellow(fit(w)))
		}
	case r.LastRunError != "":
		row("last run", "%s", r.LastRunError)
	}
	if h := r.RunInProgress; h != nil {
		row("running", "%s", yellow(h.Name()))
	} else if r.RunInProgressError != "" {
		row("running", "%s", red("unknown: "+r.RunInProgressError))
	}
	switch w := r.Watch; {
	case w != nil && w.Running:
		row("watch", "%s", green(fmt.Sprintf("running (%s) since %s%s", w.Holder, clock(w.Since), watchActivity(now, w.State))))
	case w != nil:
		row("watch", "%s", red(fmt.Sprintf("not running: %s stopped without releasing its lock (killed or crashed)%s; see journalctl -u autodeploy-watch or kubectl logs, then restart it (or, if it is retired, delete %s)", w.Holder, watchActivity(now, w.State), w.Lock)))
	case r.WatchError != "":
		row("watch", "%s", red("unknown: "+r.WatchError))
	}
	if r.Schedule.NextRun.IsZero() {
		row("next run", "never: schedule %q does not fire", r.Schedule.Spec)
	} else {
		row("next run", "in %s (%s), schedule %q", until(now, r.Schedule.NextRun), clock(r.Schedule.NextRun), r.Schedule.Spec)
	}
	if r.Schedule.Overdue {
		row("", "%s", red("overdue: the last run is older than two periods; is the cron job installed and running?"))
	}
}

// fit shortens free text to what an 80-column window shows after the
// label; -o json has it whole.
func fit(s string) string {
	const width = 80 - 13
	if r := []rune(s); len(r) > width {
		return string(r[:width-1]) + "…"
	}
	return s
}

func outcomeSummary(outcomes map[string]string) string {
	counts := map[string]int{}
	for _, o := range outcomes {
		counts[o]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	if len(parts) == 0 {
		return "no service handled"
	}
	return strings.Join(parts, ", ")
}

// shortImage is the tag (or digest) alone, unless wide.
func shortImage(ref string, wide bool) string {
	if wide || ref == "" {
		return ref
	}
	r, err := image.Parse(ref)
	if err != nil {
		return ref
	}
	if r.Tag != "" {
		return r.Tag
	}
	return r.Digest[:min(len(r.Digest), 19)]
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }

// soakState is "soaking, 4m left", "soaking, ended: the next run looks
// once more", or "soaked".
func soakState(k deploy.SoakMark, now time.Time) string {
	switch {
	case k.Passed:
		return green("soaked")
	case now.Before(k.Until):
		return yellow("soaking, " + until(now, k.Until) + " left")
	}
	return yellow("soaking, ended: the next run looks once more")
}

func ago(now, t time.Time) string { return age(now, t) + " ago" }

// recorded is ago for the date of a record another hand may have written
// without one (its zero time read "106751d ago"; issue 18, sixth pass).
func recorded(now, t time.Time) string {
	if t.IsZero() {
		return "at a time not recorded"
	}
	return ago(now, t)
}

func until(now, t time.Time) string { return age(t, now) }

// age is kubectl's compact duration, ui.Age: 45s, 3m, 2h5m, 4d.
func age(now, t time.Time) string { return ui.Age(now.Sub(t)) }

// fluxState is a Flux object's Ready condition and suspension, as the
// rows show them.
func fluxState(ready, suspended bool, msg string) string {
	state := green("Ready")
	if !ready {
		state = yellow("not Ready: " + msg)
	}
	if suspended {
		state += ", " + yellow("suspended")
	}
	return state
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// watchActivity is a watch's last event and pass, for its status row.
func watchActivity(now time.Time, s watch.State) string {
	var b strings.Builder
	if !s.LastEvent.IsZero() {
		fmt.Fprintf(&b, "; last event %s (%s): %s", ago(now, s.LastEvent), clock(s.LastEvent), s.Event)
	}
	if !s.LastPass.IsZero() {
		fmt.Fprintf(&b, "; last pass %s (%s)", ago(now, s.LastPass), clock(s.LastPass))
	}
	return b.String()
}

// promotionPolicyRow says what the ImagePolicy of a promotion under GitOps
// selects and what git has for it.
func promotionPolicyRow(pp *PromotionPolicy) string {
	switch {
	case !pp.Exists:
		return "ImagePolicy " + pp.Name + " (autodeploy's): created at the first promotion"
	case !pp.Autodeploy:
		return yellow("ImagePolicy " + pp.Name + " is not autodeploy's: promotions under GitOps are refused (autodeploy doctor)")
	}
	sel := pp.Latest
	if sel == "" {
		sel = "nothing yet"
	}
	git := "git has no tag written for it yet"
	if pp.InGit != "" {
		git = "git has " + pp.InGit
	}
	return fmt.Sprintf("ImagePolicy %s (autodeploy's) selects %s (%s); %s", pp.Name, sel, fluxState(pp.Ready, false, pp.Message), git)
}
