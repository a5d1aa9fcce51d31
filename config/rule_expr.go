package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Rule expressions (`when`, `clear_when`, a transform's `value`, a derived point's `value`) are written in
// expr-lang/expr (https://expr-lang.org), compiled to bytecode and type-checked here, at load time, against RuleEnv:
// an unknown name, a comparison of a string with a number or a `when` that is not a bool is a diagnostic at the
// file:line:column of the mistake inside the string. README "Rules" has the measurement that chose expr over HCL's
// own expressions (cty): bench/rules_test.go BenchmarkRuleExpression.
//
// expr is a sandbox by construction (no I/O, no access to Go values other than the environment given), which is
// what a rule added at run time needs: nothing in RuleEnv reads the process environment or the file system.

// MaxExprLen bounds one rule expression's source; MaxExprNodes its syntax tree (a hostile request must not make
// the compiler or the VM work for long).
const (
	MaxExprLen   = 4 << 10
	MaxExprNodes = 1000
)

// RuleEnv is what a rule expression sees: the point's fields and the functions over its series. The rule actor
// fills one per point (reused, so nothing is allocated unless the expression reads tags or values). Its zero value
// type-checks every expression; the func fields are set by the rule actor.
type RuleEnv struct {
	// The point's value as a number: bools are 1 and 0, a string or null is NaN (see IsNumber).
	Value float64 `expr:"value"`
	// IsNumber says Value holds a number (or a bool): false for a string or a null value.
	IsNumber bool `expr:"is_number"`
	// Text is the value as text: a string value itself, a number or a bool formatted.
	Text      string            `expr:"text"`
	Device    string            `expr:"device"`
	Key       string            `expr:"key"`
	Quality   int               `expr:"quality"`
	Tags      map[string]string `expr:"tags"`
	Timestamp int64             `expr:"timestamp"` // Unix nanoseconds
	Type      string            `expr:"type"`
	// Values holds the numeric values of the other points of the same device in the same batch (a derived point
	// such as values.voltage * values.current); filled only when the expression reads it.
	Values map[string]float64 `expr:"values"`

	// The functions over the point's series (the same rule, device and key), set by the rule actor.
	Changed func() bool    `expr:"changed"` // the value differs from the previous one (true for the first)
	Delta   func() float64 `expr:"delta"`   // value − previous value (0 for the first)
	Rate    func() float64 `expr:"rate"`    // delta per second of timestamps (0 for the first)
}

// exprFunctions are the pure functions every rule expression may call beside expr's own builtins (abs, ceil,
// floor, round, min, max, upper, lower, trim, hasPrefix, …). Typed, so the checker knows their signatures.
var exprFunctions = []expr.Option{
	expr.Function("between", func(p ...any) (any, error) {
		x, lo, hi := p[0].(float64), p[1].(float64), p[2].(float64)
		return x >= lo && x <= hi, nil
	}, new(func(float64, float64, float64) bool)),
	expr.Function("sqrt", func(p ...any) (any, error) { return math.Sqrt(p[0].(float64)), nil }, new(func(float64) float64)),
	expr.Function("pow", func(p ...any) (any, error) { return math.Pow(p[0].(float64), p[1].(float64)), nil }, new(func(float64, float64) float64)),
	expr.Function("ln", func(p ...any) (any, error) { return math.Log(p[0].(float64)), nil }, new(func(float64) float64)),
	expr.Function("exp", func(p ...any) (any, error) { return math.Exp(p[0].(float64)), nil }, new(func(float64) float64)),
	expr.Function("clamp", func(p ...any) (any, error) {
		return math.Min(math.Max(p[0].(float64), p[1].(float64)), p[2].(float64)), nil
	}, new(func(float64, float64, float64) float64)),
	expr.Function("is_nan", func(p ...any) (any, error) { return math.IsNaN(p[0].(float64)), nil }, new(func(float64) bool)),
	// Time of a Unix-nanosecond timestamp, in the gateway's time zone.
	expr.Function("hour", func(p ...any) (any, error) { return time.Unix(0, p[0].(int64)).Hour(), nil }, new(func(int64) int)),
	expr.Function("minute", func(p ...any) (any, error) { return time.Unix(0, p[0].(int64)).Minute(), nil }, new(func(int64) int)),
	expr.Function("weekday", func(p ...any) (any, error) { return int(time.Unix(0, p[0].(int64)).Weekday()), nil }, new(func(int64) int)),
	// age_s(timestamp): seconds from the timestamp to now.
	expr.Function("age_s", func(p ...any) (any, error) {
		return float64(time.Now().UnixNano()-p[0].(int64)) / 1e9, nil
	}, new(func(int64) float64)),
}

// Expr is one compiled rule expression.
type Expr struct {
	Source  string
	Program *vm.Program
	Range   hcl.Range // the attribute's value in the file
	// UsesTags and UsesValues say whether the expression reads tags or values, so the actor fills those maps
	// only when they are read (they cost an allocation per point otherwise).
	UsesTags, UsesValues bool
	// UsesSeries says it calls changed, delta or rate: the actor keeps the previous value per series.
	UsesSeries bool
	// UsesText says it reads text: formatting a number as text costs an allocation per point.
	UsesText bool

	// The fast path (rule_fast.go), when the whole expression is in its subset: EvalBool and EvalNumber use it.
	fastBool func(*RuleEnv) bool
	fastNum  func(*RuleEnv) float64
}

// MarshalJSON writes the expression as its source: what it means, not its bytecode.
func (e *Expr) MarshalJSON() ([]byte, error) { return json.Marshal(e.Source) }

// ExprKind is what an expression must evaluate to.
type ExprKind int

// Expression result kinds.
const (
	ExprBool ExprKind = iota
	ExprNumber
)

// errExprTooLong is the error of an expression past MaxExprLen.
var errExprTooLong = errors.New("expression too long")

// CompileExpr compiles src as a rule expression of the given kind. The error is an *ExprError with the position
// inside src when the compiler gives one.
func CompileExpr(src string, kind ExprKind) (*Expr, error) {
	if len(src) > MaxExprLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errExprTooLong, len(src), MaxExprLen)
	}
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	opts := make([]expr.Option, 0, len(exprFunctions)+3)
	opts = append(opts, expr.Env(RuleEnv{}), expr.MaxNodes(MaxExprNodes))
	switch kind {
	case ExprBool:
		opts = append(opts, expr.AsBool())
	case ExprNumber:
		opts = append(opts, expr.AsFloat64())
	}
	opts = append(opts, exprFunctions...)
	// Builtins a run-time rule must not have: date and timezone load time zones from the file system, repeat
	// builds a string of any size.
	opts = append(opts, expr.DisableBuiltin("date"), expr.DisableBuiltin("timezone"), expr.DisableBuiltin("repeat"))
	program, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, err
	}
	e := &Expr{Source: src, Program: program}
	uses := &usesVisitor{}
	node := program.Node()
	ast.Walk(&node, uses)
	e.UsesTags, e.UsesValues, e.UsesSeries, e.UsesText = uses.tags, uses.values, uses.series, uses.text
	fastCompile(e, node, kind)
	return e, nil
}

type usesVisitor struct{ tags, values, series, text bool }

func (u *usesVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		switch id.Value {
		case "tags", "$env":
			u.tags = true
			u.values = id.Value == "$env" || u.values
			u.text = id.Value == "$env" || u.text
		case "text":
			u.text = true
		case "values":
			u.values = true
		case "changed", "delta", "rate":
			u.series = true
		}
	}
}

// compileAttr compiles the expression written as the string attribute attr of the block v validates, reporting
// a problem at its position in the file: the line and column inside the string are added to where the string
// starts, so "value > \"x\"" points at the comparison, not at the attribute.
func compileAttr(v *Validator, attr, src string, kind ExprKind) *Expr {
	e, err := CompileExpr(src, kind)
	rng := v.rangeOf(attr)
	if err != nil {
		var fe *file.Error
		at := rng
		msg := err.Error()
		if errors.As(err, &fe) {
			at = exprPos(v, attr, fe.Line, fe.Column)
			msg = fe.Message
		}
		v.add(fmt.Sprintf("Invalid expression in %q", attr), msg+" (in "+quote(src)+")", at)
		return nil
	}
	e.Range = rng
	return e
}

// exprPos maps a line and column inside an expression string (expr's: line from 1, column from 0) to the file.
// For a quoted string on one line the column is exact when the string has no escapes; a heredoc or a string
// with escapes points at the right line.
func exprPos(v *Validator, attr string, line, col int) hcl.Range {
	rng := v.rangeOf(attr)
	if !v.Has(attr) {
		return rng
	}
	start := rng.Start
	if t, ok := v.body.Attributes[attr].Expr.(*hclsyntax.TemplateExpr); ok && len(t.Parts) > 0 {
		start = t.Parts[0].Range().Start // inside the quotes, or the heredoc's first line
	}
	if line < 1 {
		line = 1
	}
	pos := hcl.Pos{Line: start.Line + line - 1, Column: col + 1, Byte: start.Byte}
	if line == 1 {
		pos.Column = start.Column + col
		pos.Byte = start.Byte + col
	}
	return hcl.Range{Filename: rng.Filename, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}}
}
