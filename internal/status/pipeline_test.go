package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
)

// TestBuildPipelines: status's whole-pipeline view (issue 19), dev ->
// staging -> production at now (10:30 UTC): what each stage runs and
// since when, its soak, and for the promotion into production its
// candidate and when it is due or why not, one row per reason.
func TestBuildPipelines(t *testing.T) {
	const pipeline = `defaults: {namespace: apps}
services:
  - name: dev
  - name: staging
    soak: 10m
    promote: {from: dev}
  - name: production
    promote: {from: staging, after: 30m}
%s`
	img := func(tag string) string { return reg + "api:" + tag }
	// marks is staging's or production's annotations: verified at
	// verified (minutes before now) with a soak of soak minutes.
	marks := func(tag string, verified, soak int, passed bool) map[string]string {
		v := now.Add(-time.Duration(verified) * time.Minute)
		return map[string]string{"autodeploy.dev/verified": "true", "autodeploy.dev/soak": fmt.Sprintf(`{"image":%q,"verifiedAt":%q,"until":%q,"passed":%v}`,
			img(tag), v.Format(time.RFC3339), v.Add(time.Duration(soak)*time.Minute).Format(time.RFC3339), passed)}
	}
	with := func(m map[string]string, k, v string) map[string]string { m[k] = v; return m }
	failed := func(tag string) string {
		return fmt.Sprintf(`{"image":%q,"reason":"crash","at":%q}`, img(tag), now.Add(-time.Hour).Format(time.RFC3339))
	}
	due := func(hhmm string) string { return "2026-11-25T" + hhmm + ":00Z" }
	tests := []struct {
		name        string
		extra       string            // config after production's promote
		staging     map[string]string // staging's annotations (runs sha-2)
		prodTag     string            // production runs it
		prod        map[string]string
		stagingSoak string
		state       string
		candidate   string
		due         string
		reasonHas   string
		textHas     string
	}{
		{name: "up to date", staging: marks("sha-2", 60, 10, true), prodTag: "sha-2", prod: marks("sha-2", 20, 0, true),
			stagingSoak: StageSoaked, state: PromotionUpToDate, textHas: "next: up to date with staging"},
		{name: "due", staging: marks("sha-2", 60, 10, true), stagingSoak: StageSoaked, state: PromotionDue, candidate: img("sha-2"),
			textHas: "next: the next run promotes sha-2 from staging"},
		{name: "waiting for promote.after", staging: marks("sha-2", 20, 10, true), stagingSoak: StageSoaked, state: PromotionWaiting, candidate: img("sha-2"),
			due: due("10:40"), reasonHas: "promote.after 30m0s", textHas: "next: sha-2 from staging at 10:40:00 UTC (in 10m)"},
		{name: "the source's soak goes on", staging: marks("sha-2", 5, 40, false), stagingSoak: StageSoaking, state: PromotionSoakPending, candidate: img("sha-2"),
			due: due("11:05"), reasonHas: "is soaking in staging until 2026-11-25 11:05:00", textHas: "staging sha-2 since 3m ago, soaking, 35m left"},
		{name: "remembered failed in the source", staging: with(marks("sha-1", 90, 10, true), "autodeploy.dev/failed-image", failed("sha-2")),
			stagingSoak: StageFailed, state: PromotionFailed, reasonHas: "which failed there", textHas: "runs its failed image"},
		{name: "remembered failed in the target", staging: marks("sha-2", 60, 10, true), prod: map[string]string{"autodeploy.dev/failed-image": failed("sha-2")},
			stagingSoak: StageSoaked, state: PromotionFailed, reasonHas: "failed on 2026-11-25 09:30"},
		{name: "outside the target's window", extra: `    deployWindows: [{cron: "0 9 * * 1", duration: 8h}]` + "\n", staging: marks("sha-2", 60, 10, true),
			stagingSoak: StageSoaked, state: PromotionOutsideWindow, candidate: img("sha-2"), due: due("09:00")[:8] + "30T09:00:00Z",
			reasonHas: "outside its deploy window, next opens Mon 09:00 UTC", textHas: "waits for a deploy window"},
		{name: "not verified in the source", staging: nil, stagingSoak: StageNone, state: PromotionNotVerified, reasonHas: "not verified there by autodeploy",
			textHas: "not verified by autodeploy"},
		{name: "the target is held", staging: marks("sha-2", 60, 10, true),
			prod:        map[string]string{"autodeploy.dev/hold": `{"by":"alice@ops","reason":"freeze","at":"2026-11-25T10:00:00Z"}`},
			stagingSoak: StageSoaked, state: PromotionHeld, candidate: img("sha-2"), reasonHas: "held by alice@ops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(pipeline, tt.extra)), "pipeline.yaml")
			if err != nil {
				t.Fatal(err)
			}
			f := newFixture()
			f.deployment("dev", 1, []string{img("sha-1"), img("sha-2")}, complete(1), marks("sha-2", 120, 0, true))
			f.policy("dev", img("sha-2"))
			f.deployment("staging", 1, []string{img("sha-1"), img("sha-2")}, complete(1), tt.staging)
			prodTag := tt.prodTag
			if prodTag == "" {
				prodTag = "sha-1"
			}
			f.deployment("production", 1, []string{img(prodTag)}, complete(1), tt.prod)
			// status --service production: the chain comes whole.
			r := Build(cfg, cfg.Services[2:], f.objs, Local{}, now)
			if len(r.Pipelines) != 1 || len(r.Pipelines[0].Stages) != 3 {
				t.Fatalf("pipelines %+v", r.Pipelines)
			}
			st := r.Pipelines[0].Stages
			if st[0].Service != "dev" || st[0].Policy != "flux-system/dev" || st[0].Soak != StageVerified || st[0].Promotion != nil {
				t.Errorf("dev: %+v", st[0])
			}
			if st[1].Service != "staging" || st[1].Soak != tt.stagingSoak || st[1].Since == nil || !st[1].Since.Equal(now.Add(-3*time.Minute)) {
				t.Errorf("staging: %+v, want soak %s since 3m ago", st[1], tt.stagingSoak)
			}
			if p := st[1].Promotion; p == nil || p.From != "dev" || p.State != PromotionUpToDate {
				t.Errorf("dev -> staging: %+v", p)
			}
			p := st[2].Promotion
			if p == nil {
				t.Fatal("no promotion into production")
			}
			gotDue := ""
			if p.Due != nil {
				gotDue = p.Due.Format(time.RFC3339)
			}
			if p.From != "staging" || p.After != 30*time.Minute || p.State != tt.state || p.Candidate != tt.candidate || gotDue != tt.due || !strings.Contains(p.Reason, tt.reasonHas) {
				t.Errorf("staging -> production: %+v (due %s)\nwant state %s candidate %q due %q reason with %q", p, gotDue, tt.state, tt.candidate, tt.due, tt.reasonHas)
			}
			var b bytes.Buffer
			if err := WriteText(&b, r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(strings.Fields(b.String()), " ")
			if !strings.Contains(text, "Pipelines dev -> staging -> production") || !strings.Contains(text, tt.textHas) {
				t.Errorf("text lacks %q:\n%s", tt.textHas, b.String())
			}
			j, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(j), `"pipelines":[{"stages":[{"service":"dev"`) {
				t.Errorf("JSON: %s", j)
			}
		})
	}
}

// Chains: every path from a service with an ImagePolicy to one nothing is
// promoted from, when it holds a service asked for; none without a
// promotion.
func TestChains(t *testing.T) {
	cfg, err := config.Parse([]byte(`defaults: {namespace: apps}
services:
  - name: dev
  - name: staging
    promote: {from: dev}
  - name: eu
    promote: {from: staging}
  - name: us
    promote: {from: staging}
  - name: alone
`), "chains.yaml")
	if err != nil {
		t.Fatal(err)
	}
	name := func(ss []config.Service) string {
		var n []string
		for _, s := range ss {
			n = append(n, s.Name)
		}
		return strings.Join(n, ",")
	}
	svc := func(names ...string) []config.Service {
		var out []config.Service
		for _, n := range names {
			s, _ := cfg.Service(n)
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		asked []config.Service
		want  string
	}{
		{cfg.Services, "dev,staging,eu dev,staging,us"},
		{svc("us"), "dev,staging,us"},
		{svc("dev"), "dev,staging,eu dev,staging,us"},
		{svc("alone"), ""},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range chains(cfg, tt.asked) {
			got = append(got, name(c))
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("chains(%s) = %q, want %q", name(tt.asked), g, tt.want)
		}
	}
}

// A promoted service stands against its source as another against its
// policy (issue 19): up to date on the source's image, behind while the
// source runs one it could take. It was always "unknown": status never
// exited 0 for a pipeline.
func TestPromotedSync(t *testing.T) {
	src := reg + "api:sha-2"
	verified := &deploy.SoakMark{Image: src, VerifiedAt: now.Add(-time.Hour), Until: now.Add(-time.Hour), Passed: true}
	tests := []struct {
		name    string
		p       Promotion
		current string
		failed  *deploy.FailedImage
		want    string
	}{
		{"runs the source's image", Promotion{From: "staging", SourceImage: src, SourceVerified: verified}, src, nil, SyncUpToDate},
		{"the source runs a verified newer image", Promotion{From: "staging", SourceImage: src, SourceVerified: verified}, reg + "api:sha-1", nil, SyncBehind},
		{"the source's image is not verified there", Promotion{From: "staging", SourceImage: src}, reg + "api:sha-1", nil, SyncUpToDate},
		{"the source's image failed here", Promotion{From: "staging", SourceImage: src, SourceVerified: verified}, reg + "api:sha-1", &deploy.FailedImage{Image: src}, SyncUpToDate},
		{"no source Deployment", Promotion{From: "staging"}, reg + "api:sha-1", nil, SyncUnknown},
	}
	for _, tt := range tests {
		if got := promotedSync(tt.p, tt.current, tt.failed); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// On the whole: an up-to-date pipeline is healthy, and a behind one
	// says whose image it waits for.
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: staging\n  - name: production\n    promote: {from: staging, after: 30m}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, prod := range []string{"sha-2", "sha-1"} {
		f := newFixture()
		f.deployment("staging", 1, []string{src}, complete(1), map[string]string{"autodeploy.dev/verified": "true",
			"autodeploy.dev/soak": `{"image":"` + src + `","verifiedAt":"2026-11-25T09:24:00Z","until":"2026-11-25T09:24:00Z","passed":true}`}, kpod("staging-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
		f.policy("staging", src)
		f.deployment("production", 1, []string{reg + "api:" + prod}, complete(1), nil, kpod("production-h1-bbbbb", "h1", "Running", true, 0, time.Minute))
		r := Build(cfg, cfg.Services, f.objs, Local{}, now)
		var b bytes.Buffer
		if err := WriteText(&b, r, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		switch {
		case prod == "sha-2" && (!r.Healthy || r.Services[1].Sync != SyncUpToDate):
			t.Errorf("up to date: healthy %v, sync %s\n%s", r.Healthy, r.Services[1].Sync, b.String())
		case prod == "sha-1" && (r.Healthy || !strings.Contains(b.String(), "behind staging: sha-2")):
			t.Errorf("behind: healthy %v\n%s", r.Healthy, b.String())
		}
	}
}
