package config

import (
	"math"
	"testing"

	"github.com/expr-lang/expr/vm"
)

// fastExprs are expressions in the fast path's subset (they must get one) and beside them some that are not
// (they must not, and still evaluate on the VM).
var fastExprs = []struct {
	src  string
	kind ExprKind
	fast bool
}{
	{"value > 85", ExprBool, true},
	{"value > 0 && quality == 1", ExprBool, true},
	{"value * 1.8 + 32", ExprNumber, true},
	{"(value - 32) / 1.8", ExprNumber, true},
	{"quality + 1", ExprNumber, true},
	{"quality / 2", ExprNumber, true},
	{"quality * 3 - 7 > value", ExprBool, true},
	{"-value", ExprNumber, true},
	{"-quality * 2", ExprNumber, true},
	{"abs(value) >= 2.5 or not is_number", ExprBool, true},
	{"abs(quality - 2)", ExprNumber, true},
	{"device == 'plc-1' && key != \"t\"", ExprBool, true},
	{"type == 'float64' || value != value", ExprBool, true},
	{"timestamp > 1700000000000000000 and timestamp - 5 < 2000000000000000000", ExprBool, true},
	{"timestamp / 1e9", ExprNumber, true},
	{"changed() && abs(delta()) > 0.5 || rate() < -1", ExprBool, true},
	{"is_number == true", ExprBool, true},
	{"1 + 2 * 3", ExprNumber, true},
	{"value == 1 && quality == 1.0", ExprBool, true},
	{"!(value < 10) && true", ExprBool, true},
	{"value in 1..10", ExprBool, false},
	{"quality % 2 == 0", ExprBool, false},
	{"value ** 2", ExprNumber, false},
	{"value > 0 ? value : -value", ExprNumber, false},
	{"tags.site == 'a'", ExprBool, false},
	{"values.voltage * values.current", ExprNumber, false},
	{"upper(device) == 'PLC-1'", ExprBool, false},
	{"between(value, 1, 2)", ExprBool, false},
	{"text == '1'", ExprBool, false},
}

// fastEnvs are points to run them on: the edges of floats (NaN, ±Inf, −0) and of ints.
func fastEnvs() []*RuleEnv {
	values := []float64{0, math.Copysign(0, -1), 1, -1, 2.5, -2.5, 85, 85.0000001, 1e308, -1e308, math.Inf(1), math.Inf(-1), math.NaN(), 5e-324}
	qualities := []int{0, 1, 2, -1, math.MaxInt, math.MinInt}
	var envs []*RuleEnv
	for i, v := range values {
		for j, q := range qualities {
			e := &RuleEnv{Value: v, IsNumber: !math.IsNaN(v), Quality: q, Device: "plc-1", Key: "t", Type: "float64",
				Timestamp: int64(1700000000000000000 + i*j), Text: "1"}
			if (i+j)%3 == 0 {
				e.Device, e.Key, e.Type, e.Timestamp = "plc-2", "u", "int64", math.MaxInt64-int64(j)
			}
			setSeriesFuncs(e, float64(i-j))
			envs = append(envs, e)
		}
	}
	return envs
}

func setSeriesFuncs(e *RuleEnv, d float64) {
	e.Changed = func() bool { return d != 0 }
	e.Delta = func() float64 { return d }
	e.Rate = func() float64 { return d / 2 }
}

// sameResult says the fast path and the VM agree: the same bool, or the same float bit for bit (any NaN being
// the same as any other).
func sameResult(t testing.TB, src string, env *RuleEnv, x *Expr, kind ExprKind) {
	t.Helper()
	var m vm.VM
	slow := &Expr{Source: x.Source, Program: x.Program}
	if kind == ExprBool {
		got, err1 := x.EvalBool(&m, env)
		want, err2 := slow.EvalBool(&m, env)
		if err1 != nil || err2 != nil || got != want {
			t.Fatalf("%s on %+v: fast %v (%v), VM %v (%v)", src, *env, got, err1, want, err2)
		}
		return
	}
	got, err1 := x.EvalNumber(&m, env)
	want, err2 := slow.EvalNumber(&m, env)
	same := math.Float64bits(got) == math.Float64bits(want) || (math.IsNaN(got) && math.IsNaN(want))
	if err1 != nil || err2 != nil || !same {
		t.Fatalf("%s on %+v: fast %v (%v), VM %v (%v)", src, *env, got, err1, want, err2)
	}
}

func TestFastExprSameAsVM(t *testing.T) {
	envs := fastEnvs()
	for _, tc := range fastExprs {
		x, err := CompileExpr(tc.src, tc.kind)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if x.HasFastPath() != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.src, x.HasFastPath(), tc.fast)
		}
		for _, env := range envs {
			sameResult(t, tc.src, env, x, tc.kind)
		}
	}
}

// TestFastExprAllocatesNothing: the point of the fast path.
func TestFastExprAllocatesNothing(t *testing.T) {
	var m vm.VM
	env := &RuleEnv{Value: 90, IsNumber: true, Quality: 1}
	setSeriesFuncs(env, 1)
	for _, tc := range fastExprs {
		if !tc.fast {
			continue
		}
		x, err := CompileExpr(tc.src, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if tc.kind == ExprBool {
				_, _ = x.EvalBool(&m, env)
			} else {
				_, _ = x.EvalNumber(&m, env)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per evaluation", tc.src, allocs)
		}
	}
}

// FuzzFastExpr: any expression that compiles, on any point, gives on the fast path what it gives on the VM.
func FuzzFastExpr(f *testing.F) {
	for _, tc := range fastExprs {
		f.Add(tc.src, tc.kind == ExprBool, 85.5, 1, int64(1700000000000000000), "plc-1")
	}
	f.Add("value / quality", false, -0.0, 0, int64(0), "")
	f.Add("quality * quality * quality", false, 1.0, math.MaxInt/3, int64(-1), "x")
	f.Fuzz(func(t *testing.T, src string, isBool bool, value float64, quality int, ts int64, device string) {
		kind := ExprNumber
		if isBool {
			kind = ExprBool
		}
		x, err := CompileExpr(src, kind)
		if err != nil || !x.HasFastPath() {
			return
		}
		env := &RuleEnv{Value: value, IsNumber: !math.IsNaN(value), Quality: quality, Timestamp: ts, Device: device,
			Key: device + "k", Type: "float64"}
		setSeriesFuncs(env, value-1)
		sameResult(t, src, env, x, kind)
	})
}
