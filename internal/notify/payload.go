package notify

import (
	"encoding/json"
	"fmt"
	"time"
)

// Colours by outcome, as Slack shows them ("good", "warning", "danger").
const (
	colourOK   = "#2eb886"
	colourWarn = "#daa038"
	colourBad  = "#a30200"
)

func colour(e Event) string {
	switch e.Level {
	case "error":
		return colourBad
	case "warning":
		return colourWarn
	}
	return colourOK
}

func title(e Event) string {
	switch e.Kind {
	case Deployed:
		return "✅ " + e.Service + " deployed"
	case Failed, SoakFailed:
		what := "deploy"
		if e.Kind == SoakFailed {
			what = "soak"
		}
		if e.RolledBack != nil && !*e.RolledBack {
			return "🚨 " + e.Service + ": " + what + " failed and rollback failed"
		}
		return "❌ " + e.Service + ": " + what + " failed"
	case Promoted:
		return "⏫ " + e.Service + " promoted from " + e.Source
	case SoakPassed:
		return "✅ " + e.Service + " soaked"
	case OutsideWindow:
		return "🕘 " + e.Service + ": outside its deploy window"
	case Rollback:
		return "⏪ " + e.Service + " rolled back by hand"
	case Hold:
		return "⏸ " + e.Service + " held"
	case Resume:
		return "▶ " + e.Service + " resumed"
	case HoldExpired:
		return "▶ " + e.Service + ": hold expired"
	case Forget:
		return "🧹 " + e.Service + " forgotten"
	case Problem:
		return "⚠ " + e.Service + " needs a person"
	case Superseded:
		return "↪ " + e.Service + ": rollout superseded"
	case Unverified:
		return "⏳ " + e.Service + ": left unverified"
	}
	return e.Service + ": " + e.Kind
}

type field struct{ name, value string }

// fields are the facts of e, in the order a reader wants them.
func fields(e Event) []field {
	var fs []field
	add := func(name, value string) {
		if value != "" {
			fs = append(fs, field{name, value})
		}
	}
	add("Image", e.To)
	add("Previous", e.From)
	if e.Duration > 0 {
		add("Duration", e.Duration.Round(100*time.Millisecond).String())
	}
	add("Reason", e.Reason)
	if e.Pod != "" {
		add("Pod", fmt.Sprintf("%s (%s)", e.Pod, e.PodReason))
	}
	if e.RolledBack != nil {
		add("Rolled back", map[bool]string{true: "yes", false: "NO: someone must look"}[*e.RolledBack])
	}
	add("From service", e.Source)
	add("By", e.By)
	add("Cluster", e.Cluster)
	add("Run", e.RunID)
	return fs
}

// slackPayload is an incoming-webhook message: fallback text, and an
// attachment coloured by outcome holding Block Kit sections.
func slackPayload(e Event) ([]byte, error) {
	var mrkdwn []map[string]any
	for _, f := range fields(e) {
		mrkdwn = append(mrkdwn, map[string]any{"type": "mrkdwn", "text": fmt.Sprintf("*%s*\n%s", f.name, f.value)})
	}
	blocks := []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*" + title(e) + "*"}}}
	for i := 0; i < len(mrkdwn); i += 10 { // Slack allows 10 fields per section
		blocks = append(blocks, map[string]any{"type": "section", "fields": mrkdwn[i:min(i+10, len(mrkdwn))]})
	}
	return json.Marshal(map[string]any{
		"text":        e.Summary(),
		"attachments": []any{map[string]any{"color": colour(e), "blocks": blocks}},
	})
}

// discordPayload is a webhook message with one embed coloured by outcome.
func discordPayload(e Event) ([]byte, error) {
	var fs []map[string]any
	for _, f := range fields(e) {
		fs = append(fs, map[string]any{"name": f.name, "value": f.value, "inline": len(f.value) < 40})
	}
	var c int
	fmt.Sscanf(colour(e)[1:], "%x", &c)
	return json.Marshal(map[string]any{
		"username": "autodeploy",
		"embeds": []any{map[string]any{
			"title": title(e), "description": e.Summary(), "color": c, "fields": fs,
			"timestamp": e.Time.UTC().Format(time.RFC3339),
		}},
	})
}

// webhookPayload is the Event itself: a stable JSON document.
func webhookPayload(e Event) ([]byte, error) { return json.Marshal(e) }
