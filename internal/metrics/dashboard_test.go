package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
)

// Every query of the Grafana dashboard names metrics autodeploy writes, and
// every metric autodeploy writes is on the dashboard.
func TestDashboardQueries(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`autodeploy_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := name.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query %q uses no autodeploy metric", p.Title, tg.Expr)
			}
			for _, n := range found {
				if !slices.Contains(Names, n) {
					t.Errorf("panel %q: query %q uses %s, which autodeploy does not write", p.Title, tg.Expr, n)
				}
				used[n] = true
			}
		}
	}
	for _, n := range Names {
		if !used[n] {
			t.Errorf("metric %s is on no panel", n)
		}
	}
}
