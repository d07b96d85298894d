package watch

import (
	"fmt"
	"strings"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// State is what the active watch says about itself in its lock's record
// (lock.Held.Note): a file's record on one host, the Lease's annotation in
// the cluster, where `status` reads it from any host.
type State struct {
	Since time.Time `json:"since"`
	// LastEvent is when the last action began, Event what started it
	// ("policy-change flux-system/api", "tick", "start").
	LastEvent time.Time `json:"lastEvent,omitzero"`
	Event     string    `json:"event,omitempty"`
	// LastPass is when the last full pass (start or tick) ended.
	LastPass time.Time `json:"lastPass,omitzero"`
}

// recordPrefix starts every record: what `ps` would call the command.
const recordPrefix = "autodeploy watch"

// Record is the state as one line of logfmt-like fields after the
// command, which ParseRecord reads back.
func (s State) Record() string {
	var b strings.Builder
	b.WriteString(recordPrefix)
	field := func(k string, t time.Time) {
		if !t.IsZero() {
			fmt.Fprintf(&b, " %s=%s", k, t.UTC().Format(time.RFC3339))
		}
	}
	field("since", s.Since)
	field("last-event", s.LastEvent)
	if s.Event != "" {
		// The event names a trigger and policies: no spaces inside a field.
		fmt.Fprintf(&b, " event=%s", strings.ReplaceAll(s.Event, " ", ","))
	}
	field("last-pass", s.LastPass)
	return b.String()
}

// ParseRecord reads a State from a lock holder's command (a Lease's holder
// is "identity: command"); ok is false for any other holder.
func ParseRecord(command string) (s State, ok bool) {
	i := strings.Index(command, recordPrefix)
	if i < 0 {
		return State{}, false
	}
	for _, f := range strings.Fields(command[i+len(recordPrefix):]) {
		k, v, _ := strings.Cut(f, "=")
		t, _ := time.Parse(time.RFC3339, v)
		switch k {
		case "since":
			s.Since = t
		case "last-event":
			s.LastEvent = t
		case "event":
			s.Event = strings.ReplaceAll(v, ",", " ")
		case "last-pass":
			s.LastPass = t
		}
	}
	return s, true
}

// Who names the holder of a watch's lock: its pid (a file's record) or its
// Lease identity (host/pid, a pod's name), which a Lease's holder command
// starts with ("identity: command").
func Who(h lock.Holder) string {
	if h.Pid != 0 {
		return fmt.Sprintf("pid %d", h.Pid)
	}
	who, _, _ := strings.Cut(h.Command, ": ")
	return who
}
