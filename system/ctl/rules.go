package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/iotgw/iotgw/system"
)

// The rule engine's commands: rules list|get|add|update|remove, alerts list|ack.

// ctlRules builds the request of a rules or alerts command; ok is false for another command.
func ctlRules(f *ctlFlags, cmd string, args []string) (req ctlRequest, ok bool, err error) {
	want := func(n int, names string) error {
		if len(args) != n {
			return ctlUsagef("%s wants %s", cmd, names)
		}
		return nil
	}
	switch cmd {
	case "rules list":
		return ctlRequest{subject: "rules.list", render: renderRules}, true, want(0, "no arguments")
	case "rules get", "rules remove":
		if err := want(1, "a rule name"); err != nil {
			return ctlRequest{}, true, err
		}
		if !ctlToken(args[0]) {
			return ctlRequest{}, true, ctlUsagef("rule name %q is not a name", args[0])
		}
		verb := strings.TrimPrefix(cmd, "rules ")
		render := renderRule
		if verb == "remove" {
			render = func(w io.Writer, _ []byte, _ bool) error {
				_, err := fmt.Fprintf(w, "removed rule %s\n", args[0])
				return err
			}
		}
		return ctlRequest{subject: "rules." + verb, body: ctlJSON(map[string]string{"name": args[0]}), render: render}, true, nil
	case "rules add", "rules update":
		if err := want(0, "-f FILE and no other argument"); err != nil {
			return ctlRequest{}, true, err
		}
		if f.file == "" {
			return ctlRequest{}, true, ctlUsagef("%s wants -f FILE, the file with the rule block", cmd)
		}
		body, err := os.ReadFile(f.file)
		if err != nil {
			return ctlRequest{}, true, err
		}
		verb, done := "add", "added"
		if cmd == "rules update" {
			verb, done = "update", "updated"
		}
		return ctlRequest{subject: "rules." + verb, body: body, render: renderRuleDone(done)}, true, nil
	case "alerts list":
		return ctlRequest{subject: "alerts.list", render: renderAlerts}, true, want(0, "no arguments")
	case "alerts ack":
		if err := want(1, "the alert's key (see iotgw ctl alerts list)"); err != nil {
			return ctlRequest{}, true, err
		}
		by := os.Getenv("USER")
		if len(by) > 64 {
			by = by[:64]
		}
		return ctlRequest{subject: "alerts.ack", body: ctlJSON(map[string]string{"dedup_key": args[0], "by": by}),
			render: func(w io.Writer, _ []byte, _ bool) error {
				_, err := fmt.Fprintf(w, "acknowledged %s\n", args[0])
				return err
			}}, true, nil
	}
	return ctlRequest{}, false, nil
}

func renderRules(w io.Writer, reply []byte, _ bool) error {
	var r system.RulesReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Rules) == 0 {
		_, err := fmt.Fprintln(w, "no rules")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "NAME\tTYPE\tSOURCE\tSTATE\tRESTARTS\tIN\tOUT\tDROPPED\tERRORS\tEVAL/POINT\tALERTS")
	for _, ru := range r.Rules {
		s := ru.Stats
		per := "-"
		if s.In > 0 {
			per = (time.Duration(s.EvalNs / s.In)).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\n", ru.Name, ru.Type, ru.Source, orDash(ru.State),
			ru.Restarts, s.In, s.Out, s.Dropped, s.Errors, per, s.Alerts)
	}
	return tw.Flush()
}

func renderRule(w io.Writer, reply []byte, _ bool) error {
	var r system.RulesReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if r.Rule == nil {
		return errors.New(`no "rule" in the reply`)
	}
	ru := r.Rule
	tw := ctlTable(w)
	fmt.Fprintf(tw, "name:\t%s\ntype:\t%s\nsource:\t%s\ninput:\t%s\nqueue:\t%s\nstate:\t%s\nrestarts:\t%d\n",
		ru.Name, ru.Type, ru.Source, ru.Input, ru.Queue, orDash(ru.State), ru.Restarts)
	s := ru.Stats
	fmt.Fprintf(tw, "points:\tin %d, matched %d, out %d, dropped %d, late %d, errors %d\n", s.In, s.Matched, s.Out, s.Dropped, s.Late, s.Errors)
	if ru.Defined != "" {
		fmt.Fprintf(tw, "defined:\t%s\n", ru.Defined)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ru.HCL != "" {
		_, err := fmt.Fprintf(w, "\n%s\n", strings.TrimRight(ru.HCL, "\n"))
		return err
	}
	return nil
}

func renderRuleDone(verb string) func(io.Writer, []byte, bool) error {
	return func(w io.Writer, reply []byte, _ bool) error {
		var r system.RulesReply
		if err := json.Unmarshal(reply, &r); err != nil {
			return err
		}
		name := ""
		if r.Rule != nil {
			name = r.Rule.Name
		}
		_, err := fmt.Fprintf(w, "%s rule %s\n", verb, name)
		return err
	}
}

func renderAlerts(w io.Writer, reply []byte, _ bool) error {
	var r system.RulesReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return err
	}
	if len(r.Alerts) == 0 {
		_, err := fmt.Fprintln(w, "no active alerts")
		return err
	}
	tw := ctlTable(w)
	fmt.Fprintln(tw, "KEY\tSTATE\tLEVEL\tDEVICE\tPOINT\tSINCE\tACK\tMESSAGE")
	for _, a := range r.Alerts {
		ack := "-"
		if a.Acknowledged {
			ack = orDash(a.AckedBy)
		}
		since := time.Unix(0, a.Since).Format(time.RFC3339)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Key, a.State, a.Level, a.Device, a.PointKey, since, ack, a.Message)
	}
	return tw.Flush()
}
