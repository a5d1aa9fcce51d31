package bench

import (
	"strings"
	"testing"
)

// The side-by-side's section is found, replaced in place, added after the Modbus section when missing, and
// carried over whole (its table, not a line of it lost).
func TestReportSections(t *testing.T) {
	report := "# r\n\n## Modbus, poll to sink\n\nrows\n\n" + peerHeading + "\n\nold table\n| a |\n\n## Rules\n\nrules\n"
	if got := reportSection(report, peerHeading); got != peerHeading+"\n\nold table\n| a |\n\n" {
		t.Fatalf("section: %q", got)
	}
	if got := reportSection(report, "## Rules"); got != "## Rules\n\nrules\n" {
		t.Fatalf("last section: %q", got)
	}
	if got := reportSection(report, "## Nothing"); got != "" {
		t.Fatalf("missing section: %q", got)
	}
	next := peerHeading + "\n\nnew table\n\n"
	if got := replaceSection(report, peerHeading, "## Modbus, poll to sink", next); got != "# r\n\n## Modbus, poll to sink\n\nrows\n\n"+next+"## Rules\n\nrules\n" {
		t.Fatalf("replaced: %q", got)
	}
	without := "# r\n\n## Modbus, poll to sink\n\nrows\n\n## Rules\n\nrules\n"
	if got := replaceSection(without, peerHeading, "## Modbus, poll to sink", next); got != "# r\n\n## Modbus, poll to sink\n\nrows\n\n"+next+"## Rules\n\nrules\n" {
		t.Fatalf("added: %q", got)
	}
	if got := replaceSection("# r\n", peerHeading, "## Modbus, poll to sink", next); !strings.HasSuffix(got, next) {
		t.Fatalf("appended: %q", got)
	}
	// A heading that only begins like ours is not ours.
	if got := reportSection("x\n"+peerHeading+" and more\n\nt\n", peerHeading); got != "" {
		t.Fatalf("prefix heading: %q", got)
	}
}
