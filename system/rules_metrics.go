package system

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Per-rule figures on /metrics, beside the actor metrics every rule has already (iotgw_points_in_total,
// iotgw_points_out_total and iotgw_errors_total{kind="expression"} with actor="rules/{name}").
var (
	descRuleMatched  = prometheus.NewDesc("iotgw_rule_matched_total", "Points a rule's match and when selected.", []string{"rule", "type"}, nil)
	descRuleDropped  = prometheus.NewDesc("iotgw_rule_dropped_total", "Points a rule dropped: not matched, when false, a deadband, a rate limit, a late arrival.", []string{"rule", "type"}, nil)
	descRuleLate     = prometheus.NewDesc("iotgw_rule_late_total", "Points an event-time aggregate dropped for coming after their window closed.", []string{"rule", "type"}, nil)
	descRuleErrors   = prometheus.NewDesc("iotgw_rule_errors_total", "Expression errors of a rule (each an event on iot.errors.rules).", []string{"rule", "type"}, nil)
	descRuleEval     = prometheus.NewDesc("iotgw_rule_eval_seconds_total", "Time a rule spent on its batches.", []string{"rule", "type"}, nil)
	descRuleAlerts   = prometheus.NewDesc("iotgw_rule_active_alerts", "Pending and firing alerts of an alert rule.", []string{"rule", "type"}, nil)
	descRuleSeries   = prometheus.NewDesc("iotgw_rule_series", "Series (device and key, or group) a rule keeps state for.", []string{"rule", "type"}, nil)
	descRuleNotOwned = prometheus.NewDesc("iotgw_rule_not_owned_total", "Batches of devices another gateway sharing the rule owns (partition = \"device\").", []string{"rule", "type"}, nil)
	descRuleMembers  = prometheus.NewDesc("iotgw_rule_members", "Gateways sharing a rule partitioned by device, this one included.", []string{"rule", "type"}, nil)
)

type rulesCollector struct{ rt *Runtime }

func (c rulesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRuleMatched, descRuleDropped, descRuleLate, descRuleErrors, descRuleEval,
		descRuleAlerts, descRuleSeries, descRuleNotOwned, descRuleMembers} {
		ch <- d
	}
}

func (c rulesCollector) Collect(ch chan<- prometheus.Metric) {
	reg := c.rt.rules
	if reg == nil {
		return
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for name, e := range reg.entries {
		s := e.figures.Get()
		m := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, t, v, name, e.rule.Type)
		}
		m(descRuleMatched, prometheus.CounterValue, float64(s.Matched))
		m(descRuleDropped, prometheus.CounterValue, float64(s.Dropped))
		m(descRuleLate, prometheus.CounterValue, float64(s.Late))
		m(descRuleErrors, prometheus.CounterValue, float64(s.Errors))
		m(descRuleEval, prometheus.CounterValue, float64(s.EvalNs)/1e9)
		m(descRuleAlerts, prometheus.GaugeValue, float64(s.Alerts))
		m(descRuleSeries, prometheus.GaugeValue, float64(s.Series))
		m(descRuleNotOwned, prometheus.CounterValue, float64(s.NotOwned))
		m(descRuleMembers, prometheus.GaugeValue, float64(s.Members))
	}
}
