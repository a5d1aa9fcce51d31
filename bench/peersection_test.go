package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The side-by-side with Telegraf (TestPeer) takes minutes and needs a Telegraf built by hand, so TestReport does not
// run it. Its section of REPORT.md is written by TestPeer itself (IOTGW_PEER_REPORT=1) and carried over unchanged by
// TestReport, so that regenerating the report never drops the last side-by-side measured.

const peerHeading = "## Modbus side by side with Telegraf (TestPeer)"

// reportSection returns the section of report that begins with heading, up to the next "## " heading (without
// it); "" when there is none.
func reportSection(report, heading string) string {
	i := strings.Index(report, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := report[i+1:]
	if j := strings.Index(rest[len(heading):], "\n## "); j >= 0 {
		return rest[:len(heading)+j+1]
	}
	return rest
}

// replaceSection puts section in report in place of the one with the same heading, or after the section that
// begins with after when report has none; at the end when neither is there.
func replaceSection(report, heading, after, section string) string {
	if old := reportSection(report, heading); old != "" {
		return strings.Replace(report, old, section, 1)
	}
	if prev := reportSection(report, after); prev != "" {
		return strings.Replace(report, prev, prev+section, 1)
	}
	return report + "\n" + section
}

// carriedPeerSection is what TestReport writes for the side-by-side: the section as TestPeer last wrote it in
// REPORT.md, or a line saying how to measure it.
func carriedPeerSection() string {
	old, _ := os.ReadFile("REPORT.md")
	if s := reportSection(string(old), peerHeading); s != "" {
		return "\n" + strings.TrimLeft(s, "\n")
	}
	return "\n" + peerHeading + "\n\nNot measured in this report: `IOTGW_PEER=1 IOTGW_PEER_REPORT=1 go test -run '^TestPeer$' -v ./bench/` writes\nthis section (README, The cost per poll, says how to build Telegraf).\n\n"
}

// peerSection is TestPeer's section: how it ran, the table, and the issue 13 aim against it.
func peerSection(settings, table string, ratios map[string]float64, workloads []peerWorkload) string {
	commit := "unknown commit"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		// REPORT.md itself is the one file a report run changes: not a change to what was measured.
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!REPORT.md").Output(); err == nil && len(st) > 0 {
			commit += " with uncommitted changes"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nWritten by TestPeer (`IOTGW_PEER=1 IOTGW_PEER_REPORT=1 go test -run '^TestPeer$' -v ./bench/`) on %s at %s,\n",
		peerHeading, time.Now().UTC().Format("2006-01-02"), commit)
	b.WriteString("not by TestReport, which carries it over. One simulator process with a port per device; Telegraf 1.39.3\n")
	b.WriteString("(inputs.modbus request style, `optimization = \"max_insert\"`, outputs.file influx) and `iotgw run` (Modbus →\n")
	b.WriteString("processor → " + peerSinkText() + ", JetStream off unless IOTGW_PEER_JETSTREAM), each its own process, one at a\n")
	b.WriteString("time in interleaved windows; CPU from /proc/PID/stat, context switches over all threads, RSS from\n")
	fmt.Fprintf(&b, "/proc/PID/status; %s. It is not part of CI (Telegraf is built by hand: README \"The cost per poll\").\n\n", settings)
	b.WriteString(table)
	b.WriteString("\nThe aim (issue 13): at most half Telegraf's CPU per point on the first workload, below it on the other two.")
	for i, w := range workloads {
		r, ok := ratios[w.name]
		if !ok || i > 2 {
			continue
		}
		limit := 1.0
		if i == 0 {
			limit = 0.5
		}
		verdict := "not met"
		if r <= limit {
			verdict = "met"
		}
		fmt.Fprintf(&b, " %s: %.2f× (%s).", w.name, r, verdict)
	}
	b.WriteString("\n\n")
	return b.String()
}

// peerSinkText says in the report which sink iotgw wrote through.
func peerSinkText() string {
	if peerSink() == "console" {
		return "console JSON to a file"
	}
	return "file sink, JSON lines, sync every 1 s"
}
