package status

import (
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Pipeline is one chain of promotions (config promote), from the service
// whose ImagePolicy feeds it to a service nothing is promoted from: dev ->
// staging -> production. A source promoted to two targets starts two
// chains.
type Pipeline struct {
	Stages []Stage `json:"stages"`
}

// Soak states of a stage (Stage.Soak).
const (
	StageSoaking    = "soaking"
	StageSoaked     = "soaked"
	StageVerified   = "verified"   // verified, no soak configured then
	StageUnverified = "unverified" // set by autodeploy, not verified yet
	StageFailed     = "failed"     // runs the image it remembers as failed
	StageNone       = "none"       // not verified by autodeploy (set by someone else, or before autodeploy)
)

// Stage is one service of a chain: what it runs and since when, and how
// that stands.
type Stage struct {
	Service string `json:"service"`
	// Image is what the Deployment runs ("" when it does not exist);
	// Since is when it finished rolling it out.
	Image string     `json:"image,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	Soak  string     `json:"soak"`
	// VerifiedAt is when autodeploy verified Image here; SoakUntil when
	// its soak ends (or ended).
	VerifiedAt *time.Time `json:"verifiedAt,omitempty"`
	SoakUntil  *time.Time `json:"soakUntil,omitempty"`
	// Policy is the first stage's ImagePolicy (namespace/name).
	Policy string `json:"imagePolicy,omitempty"`
	// Promotion is the promotion into this stage (every stage but the
	// first).
	Promotion *StagePromotion `json:"promotion,omitempty"`
}

// States of a promotion (StagePromotion.State).
const (
	PromotionUpToDate      = "up-to-date"     // the stage runs what its source runs
	PromotionDue           = "due"            // the next run promotes Candidate
	PromotionWaiting       = "waiting"        // promote.after since the source's verification: Due
	PromotionSoakPending   = "soak-pending"   // the source's soak goes on: Due at the earliest
	PromotionOutsideWindow = "outside-window" // the stage's deploy windows: Due when the next opens
	PromotionFailed        = "failed"         // the source's image is remembered as failed (in the source or here)
	PromotionNotVerified   = "not-verified"   // the source runs an image autodeploy did not verify there
	PromotionHeld          = "held"           // the stage is held (autodeploy hold, a manual rollback)
	PromotionBusy          = "busy"           // the stage's own rollout or soak comes first
	PromotionBlocked       = "blocked"        // anything else: Reason says what
)

// StagePromotion is how the promotion into a stage stands: the candidate,
// and when the next promotion is due or why not, from the same plan
// `run` makes (Reason is its words).
type StagePromotion struct {
	From      string        `json:"from"`
	After     time.Duration `json:"afterNanos"`
	Candidate string        `json:"candidate,omitempty"`
	State     string        `json:"state"`
	Due       *time.Time    `json:"due,omitempty"`
	Reason    string        `json:"reason"`
}

// chains lists every chain of cfg's promotions, root first, that holds
// one of services (all of them for a whole status).
func chains(cfg *config.Config, services []config.Service) [][]config.Service {
	targets := map[string][]config.Service{}
	for _, s := range cfg.Services {
		if s.Promote != nil {
			targets[s.Promote.From] = append(targets[s.Promote.From], s)
		}
	}
	var out [][]config.Service
	var walk func(path []config.Service)
	walk = func(path []config.Service) {
		last := path[len(path)-1]
		next := targets[last.Name]
		if len(next) == 0 || len(path) > len(cfg.Services) { // the length: a cycle Load would have refused
			if len(path) > 1 && slices.ContainsFunc(path, func(p config.Service) bool {
				return slices.ContainsFunc(services, func(s config.Service) bool { return s.Name == p.Name })
			}) {
				out = append(out, path)
			}
			return
		}
		for _, t := range next {
			walk(append(slices.Clone(path), t))
		}
	}
	for _, s := range cfg.Services {
		if s.Promote == nil && len(targets[s.Name]) > 0 {
			walk([]config.Service{s})
		}
	}
	return out
}

// pipelines builds the chains holding services from the services' blocks
// already built (built), building those of the other stages.
func pipelines(cfg *config.Config, services []config.Service, built []Service, objs Objects, now time.Time) []Pipeline {
	byName := map[string]Service{}
	for _, s := range built {
		byName[s.Name] = s
	}
	svc := func(s config.Service) Service {
		if b, ok := byName[s.Name]; ok {
			return b
		}
		b := buildService(cfg, s, objs, now)
		byName[s.Name] = b
		return b
	}
	var out []Pipeline
	for _, chain := range chains(cfg, services) {
		var p Pipeline
		for i, cs := range chain {
			st := stage(cs, svc(cs), objs)
			if i > 0 {
				st.Promotion = promotionInto(cs, svc(cs), p.Stages[i-1], now)
			}
			p.Stages = append(p.Stages, st)
		}
		out = append(out, p)
	}
	return out
}

func stage(cs config.Service, s Service, objs Objects) Stage {
	st := Stage{Service: cs.Name, Soak: StageNone}
	if cs.Promote == nil {
		st.Policy = cs.PolicyNamespace + "/" + cs.PolicyName
	}
	if s.Rollout == nil {
		return st
	}
	st.Image, st.Since = s.Rollout.Image, s.Rollout.RolledOutAt
	switch m := verification(objs.Deployments[cs.Namespace+"/"+cs.Deployment], cs); {
	case s.Failed != nil && image.SameString(s.Failed.Image, st.Image):
		st.Soak = StageFailed
	case s.Unverified:
		st.Soak = StageUnverified
	case m != nil:
		at, until := m.VerifiedAt, m.Until
		st.VerifiedAt, st.SoakUntil = &at, &until
		switch {
		case !m.Until.After(m.VerifiedAt):
			st.Soak = StageVerified
		case m.Passed:
			st.Soak = StageSoaked
		default:
			st.Soak = StageSoaking
		}
	}
	return st
}

// verification is autodeploy's verification of what d, cs's Deployment,
// runs (its soak mark), nil when there is none.
func verification(d *appsv1.Deployment, cs config.Service) *deploy.SoakMark {
	if d == nil {
		return nil
	}
	img, _ := rollout.ContainerImage(&d.Spec.Template, deploy.ServiceContainer(d, cs))
	if m, ok := deploy.ParseSoak(d.Annotations); ok && d.Annotations[deploy.AnnVerified] == "true" && image.SameString(m.Image, img) {
		return &m
	}
	return nil
}

// promotionInto judges the promotion into dst (config cs) from src, the
// stage before it: the plan `run` makes for dst (dst.NextRun) says what
// happens; the source's marks say when.
func promotionInto(cs config.Service, dst Service, src Stage, now time.Time) *StagePromotion {
	p := &StagePromotion{From: cs.Promote.From, After: cs.Promote.After, State: PromotionBlocked}
	n := dst.NextRun
	if n != nil {
		p.Reason = n.Reason
	}
	due := func(t time.Time) {
		t = t.UTC()
		p.Due = &t
	}
	failed := src.Soak == StageFailed || (dst.Failed != nil && image.SameString(dst.Failed.Image, src.Image))
	if src.Image != "" && !failed && src.VerifiedAt != nil {
		p.Candidate = src.Image
	}
	switch {
	case src.Image == "":
		// the plan says the source's Deployment does not exist
	case dst.Rollout != nil && image.SameString(dst.Rollout.Image, src.Image):
		p.State, p.Candidate = PromotionUpToDate, ""
	case n == nil:
	case n.Action == string(deploy.Deploy):
		p.State = PromotionDue
	case n.Action == string(deploy.Verify) || n.Action == string(deploy.Soak):
		p.State = PromotionBusy
	case n.Held:
		p.State = PromotionHeld
	case failed:
		p.State = PromotionFailed
	case n.OutsideWindow:
		p.State = PromotionOutsideWindow
		if w := dst.Window; w != nil && w.NextOpen != nil {
			due(*w.NextOpen)
		}
	case src.VerifiedAt == nil:
		p.State = PromotionNotVerified
	case src.Soak == StageSoaking:
		p.State = PromotionSoakPending
		at := src.VerifiedAt.Add(p.After)
		if src.SoakUntil.After(at) {
			at = *src.SoakUntil
		}
		due(at)
	case now.Before(src.VerifiedAt.Add(p.After)):
		p.State = PromotionWaiting
		due(src.VerifiedAt.Add(p.After))
	}
	return p
}
