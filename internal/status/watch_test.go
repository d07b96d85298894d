package status

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fatih/color"

	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

// The watch's row and JSON, from its lock's record: running (file and
// Lease holders), died holding it (unhealthy), none, and a record that is
// not a watch's.
func TestBuildWatch(t *testing.T) {
	st := watch.State{Since: now.Add(-time.Hour), LastEvent: now.Add(-2 * time.Minute), Event: "policy-change apps/api", LastPass: now.Add(-time.Minute)}
	for _, tc := range []struct {
		name    string
		holder  *lock.Holder
		held    bool
		want    string // in the text; "" for no watch row
		json    string
		healthy bool
	}{
		{"running on a host", &lock.Holder{Pid: 42, Since: st.Since, Command: st.Record()}, true,
			"watch      running (pid 42) since 09:30:00 UTC; last event 2m ago (10:28:00", `"watch":{"running":true,"holder":"pid 42"`, true},
		{"running in the cluster", &lock.Holder{Command: "autodeploy-watch-7d9f-x2k: " + st.Record()}, true,
			"running (autodeploy-watch-7d9f-x2k) since", `"holder":"autodeploy-watch-7d9f-x2k"`, true},
		{"died holding its lock", &lock.Holder{Pid: 42, Command: st.Record()}, false,
			"watch      not running: pid 42 stopped without releasing its lock (killed or", `"watch":{"running":false`, false},
		{"no watch ran", &lock.Holder{}, false, "", "", true},
		{"a run's record", &lock.Holder{Pid: 7, Command: "autodeploy run 20261125T102000-ab12"}, true, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, objs := scenario(t)
			l := local()
			l.WatchHolder, l.WatchHeld = tc.holder, tc.held
			r := Build(cfg, cfg.Services, objs, l, now)
			b, _ := json.Marshal(r)
			if tc.json == "" && strings.Contains(string(b), `"watch"`) || tc.json != "" && !strings.Contains(string(b), tc.json) {
				t.Errorf("json: want %q in %s", tc.json, b)
			}
			if healthyWithout := Build(cfg, cfg.Services, objs, local(), now).Healthy; r.Healthy != (healthyWithout && tc.healthy) {
				t.Errorf("healthy = %v", r.Healthy)
			}
			saved := color.NoColor
			color.NoColor = true
			defer func() { color.NoColor = saved }()
			var buf bytes.Buffer
			if err := WriteText(&buf, r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(buf.String(), "watch "); tc.want == "" && got || tc.want != "" && !strings.Contains(buf.String(), tc.want) {
				t.Errorf("text: want %q in\n%s", tc.want, buf.String())
			}
		})
	}
}
