package system

import (
	"strings"
	"testing"
	"time"
)

// TestRequestReloadReportsProblems: the reload SIGHUP asks for returns the reply's problems, so that `iotgw run`
// can log them: a broken file with its position, and nothing when the reload went through.
func TestRequestReloadReportsProblems(t *testing.T) {
	rt, write := reloadRuntime(t, gatewayForReload)
	if err := rt.RequestReload(15 * time.Second); err != nil {
		t.Fatalf("reload of an unchanged file: got %v, want no error", err)
	}
	write(gatewayForReload + "device \"d1\" {\n  driver = \"nosuch\"\n}\n")
	err := rt.RequestReload(15 * time.Second)
	if err == nil {
		t.Fatal("reload of a broken file: got no error, want its problems")
	}
	for _, want := range []string{"is not valid; nothing changed", "gateway.hcl:4:", "nosuch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error %q lacks %q", err, want)
		}
	}
}
