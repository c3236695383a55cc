package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// docs/grafana-dashboard.json is an importable dashboard (valid JSON, a
// Prometheus data source input, panels with queries) whose every query
// names only metrics this package exports, with label values they have.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Inputs []struct{ Name, PluginID string } `json:"__inputs"`
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].PluginID != "prometheus" || len(dash.Panels) < 6 {
		t.Fatalf("inputs %+v, %d panels", dash.Inputs, len(dash.Panels))
	}
	families, err := newRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{} // metric -> "label=value"
	for _, f := range families {
		m := map[string]bool{}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				m[l.GetName()+"="+l.GetValue()] = true
			}
		}
		labels[f.GetName()] = m
	}
	name := regexp.MustCompile(`caddy_guest_auth_[a-z_]+`)
	matcher := regexp.MustCompile(`(\w+)=~?"([^"]*)"`)
	exprs := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, m := range name.FindAllString(tg.Expr, -1) {
				have, ok := labels[m]
				if !ok {
					t.Errorf("panel %q: %s is not exported", p.Title, m)
					continue
				}
				for _, lm := range matcher.FindAllStringSubmatch(tg.Expr, -1) {
					for _, v := range regexp.MustCompile(`\|`).Split(lm[2], -1) {
						if !have[lm[1]+"="+v] {
							t.Errorf("panel %q: %s has no %s=%q", p.Title, m, lm[1], v)
						}
					}
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("no queries")
	}
}
