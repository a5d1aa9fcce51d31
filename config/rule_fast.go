package config

import (
	"strconv"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// The fast path of rule expressions. expr's VM keeps its stack as []any, so every float it loads from RuleEnv or
// computes is boxed: `value * 1.8 + 32` costs four allocations per point, about half the rule's own work per point
// (bench/rules_test.go BenchmarkRuleEngine). The expressions rules are mostly written in — arithmetic and
// comparisons over value, quality and timestamp, string equality over device, key and type, &&, ||, !, abs,
// changed(), delta(), rate() — are compiled here a second time, from the tree expr has already parsed, type-checked
// and optimised, into Go closures over *RuleEnv that allocate nothing. Anything else (tags, values, text
// functions, ternaries, %, **, …) runs on expr's VM as before.
//
// The closures do what expr's runtime does for the same operand types (vm/runtime helpers): int op int is Go int
// arithmetic (wrapping), an int with a float is converted to float64, / is always float64, == on two numbers
// compares them as numbers, abs is "if x < 0 then -x" (so abs(-0.0) stays -0.0, as in expr). FuzzFastExpr runs
// both on the same expressions and points and requires the same result, bit for bit. expr itself takes the same
// route for typed functions (expr.Function with a signature is called without reflection); eKuiper evaluates its
// SQL's ASTs with a tree-walking valuer, which is what this is, for a typed subset.

// kind is the static type of a fast node.
type kind int

const (
	kindNone kind = iota
	kindFloat
	kindInt
	kindBool
	kindString
)

// fastNode is a compiled node: one of the funcs is set, as its kind says.
type fastNode struct {
	kind kind
	f    func(*RuleEnv) float64
	i    func(*RuleEnv) int
	b    func(*RuleEnv) bool
	s    func(*RuleEnv) string
}

// float returns the node as a float64 (an int converted), for mixed arithmetic and comparisons.
func (n fastNode) float() func(*RuleEnv) float64 {
	if n.kind == kindInt {
		i := n.i
		return func(e *RuleEnv) float64 { return float64(i(e)) }
	}
	return n.f
}

// fastCompile sets x's fast path when its whole tree is in the subset.
func fastCompile(x *Expr, node ast.Node, want ExprKind) {
	if strconv.IntSize != 64 {
		return // the closures use Go int for quality and timestamp, as expr does; only where int is int64
	}
	n, ok := fast(node)
	if !ok {
		return
	}
	switch {
	case want == ExprBool && n.kind == kindBool:
		x.fastBool = n.b
	case want == ExprNumber && (n.kind == kindFloat || n.kind == kindInt):
		x.fastNum = n.float()
	}
}

// HasFastPath says the expression runs without expr's VM (for tests and the README's account).
func (x *Expr) HasFastPath() bool { return x.fastBool != nil || x.fastNum != nil }

// EvalBool evaluates a bool expression on env: the fast path when it has one, else m (a VM reused by the caller).
func (x *Expr) EvalBool(m *vm.VM, env *RuleEnv) (bool, error) {
	if x.fastBool != nil {
		return x.fastBool(env), nil
	}
	out, err := m.Run(x.Program, env)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

// EvalNumber evaluates a number expression on env, as EvalBool.
func (x *Expr) EvalNumber(m *vm.VM, env *RuleEnv) (float64, error) {
	if x.fastNum != nil {
		return x.fastNum(env), nil
	}
	out, err := m.Run(x.Program, env)
	if err != nil {
		return 0, err
	}
	f, _ := out.(float64)
	return f, nil
}

func fast(node ast.Node) (fastNode, bool) {
	switch n := node.(type) {
	case *ast.IdentifierNode:
		return fastIdent(n.Value)
	case *ast.IntegerNode:
		v := n.Value
		return fastNode{kind: kindInt, i: func(*RuleEnv) int { return v }}, true
	case *ast.FloatNode:
		v := n.Value
		return fastNode{kind: kindFloat, f: func(*RuleEnv) float64 { return v }}, true
	case *ast.BoolNode:
		v := n.Value
		return fastNode{kind: kindBool, b: func(*RuleEnv) bool { return v }}, true
	case *ast.StringNode:
		v := n.Value
		return fastNode{kind: kindString, s: func(*RuleEnv) string { return v }}, true
	case *ast.ConstantNode:
		switch v := n.Value.(type) {
		case int:
			return fastNode{kind: kindInt, i: func(*RuleEnv) int { return v }}, true
		case float64:
			return fastNode{kind: kindFloat, f: func(*RuleEnv) float64 { return v }}, true
		case bool:
			return fastNode{kind: kindBool, b: func(*RuleEnv) bool { return v }}, true
		case string:
			return fastNode{kind: kindString, s: func(*RuleEnv) string { return v }}, true
		}
	case *ast.UnaryNode:
		return fastUnary(n)
	case *ast.BinaryNode:
		return fastBinary(n)
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && len(n.Arguments) == 0 {
			switch id.Value {
			case "changed":
				return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return e.Changed() }}, true
			case "delta":
				return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 { return e.Delta() }}, true
			case "rate":
				return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 { return e.Rate() }}, true
			}
		}
	case *ast.BuiltinNode:
		if n.Name == "abs" && len(n.Arguments) == 1 {
			a, ok := fast(n.Arguments[0])
			switch {
			case ok && a.kind == kindFloat:
				f := a.f
				return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 {
					if x := f(e); x < 0 {
						return -x
					} else {
						return x
					}
				}}, true
			case ok && a.kind == kindInt:
				i := a.i
				return fastNode{kind: kindInt, i: func(e *RuleEnv) int {
					if x := i(e); x < 0 {
						return -x
					} else {
						return x
					}
				}}, true
			}
		}
	}
	return fastNode{}, false
}

func fastIdent(name string) (fastNode, bool) {
	switch name {
	case "value":
		return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 { return e.Value }}, true
	case "is_number":
		return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return e.IsNumber }}, true
	case "quality":
		return fastNode{kind: kindInt, i: func(e *RuleEnv) int { return e.Quality }}, true
	case "timestamp":
		return fastNode{kind: kindInt, i: func(e *RuleEnv) int { return int(e.Timestamp) }}, true
	case "device":
		return fastNode{kind: kindString, s: func(e *RuleEnv) string { return e.Device }}, true
	case "key":
		return fastNode{kind: kindString, s: func(e *RuleEnv) string { return e.Key }}, true
	case "type":
		return fastNode{kind: kindString, s: func(e *RuleEnv) string { return e.Type }}, true
	}
	return fastNode{}, false
}

func fastUnary(n *ast.UnaryNode) (fastNode, bool) {
	a, ok := fast(n.Node)
	if !ok {
		return fastNode{}, false
	}
	switch {
	case (n.Operator == "!" || n.Operator == "not") && a.kind == kindBool:
		b := a.b
		return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return !b(e) }}, true
	case n.Operator == "-" && a.kind == kindFloat:
		f := a.f
		return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 { return -f(e) }}, true
	case n.Operator == "-" && a.kind == kindInt:
		i := a.i
		return fastNode{kind: kindInt, i: func(e *RuleEnv) int { return -i(e) }}, true
	}
	return fastNode{}, false
}

func numeric(k kind) bool { return k == kindFloat || k == kindInt }

func fastBinary(n *ast.BinaryNode) (fastNode, bool) {
	l, ok := fast(n.Left)
	if !ok {
		return fastNode{}, false
	}
	r, ok := fast(n.Right)
	if !ok {
		return fastNode{}, false
	}
	op := n.Operator
	switch {
	case l.kind == kindBool && r.kind == kindBool:
		lb, rb := l.b, r.b
		switch op {
		case "&&", "and":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return lb(e) && rb(e) }}, true
		case "||", "or":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return lb(e) || rb(e) }}, true
		case "==":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return lb(e) == rb(e) }}, true
		case "!=":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return lb(e) != rb(e) }}, true
		}
	case l.kind == kindString && r.kind == kindString:
		ls, rs := l.s, r.s
		switch op {
		case "==":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return ls(e) == rs(e) }}, true
		case "!=":
			return fastNode{kind: kindBool, b: func(e *RuleEnv) bool { return ls(e) != rs(e) }}, true
		}
	case l.kind == kindInt && r.kind == kindInt:
		return intBinary(op, l.i, r.i)
	case numeric(l.kind) && numeric(r.kind):
		return floatBinary(op, l.float(), r.float())
	}
	return fastNode{}, false
}

func intBinary(op string, l, r func(*RuleEnv) int) (fastNode, bool) {
	var i func(*RuleEnv) int
	var b func(*RuleEnv) bool
	switch op {
	case "+":
		i = func(e *RuleEnv) int { return l(e) + r(e) }
	case "-":
		i = func(e *RuleEnv) int { return l(e) - r(e) }
	case "*":
		i = func(e *RuleEnv) int { return l(e) * r(e) }
	case "/": // expr: always a float division
		return fastNode{kind: kindFloat, f: func(e *RuleEnv) float64 { return float64(l(e)) / float64(r(e)) }}, true
	case "<":
		b = func(e *RuleEnv) bool { return l(e) < r(e) }
	case "<=":
		b = func(e *RuleEnv) bool { return l(e) <= r(e) }
	case ">":
		b = func(e *RuleEnv) bool { return l(e) > r(e) }
	case ">=":
		b = func(e *RuleEnv) bool { return l(e) >= r(e) }
	case "==":
		b = func(e *RuleEnv) bool { return l(e) == r(e) }
	case "!=":
		b = func(e *RuleEnv) bool { return l(e) != r(e) }
	default:
		return fastNode{}, false
	}
	if i != nil {
		return fastNode{kind: kindInt, i: i}, true
	}
	return fastNode{kind: kindBool, b: b}, true
}

func floatBinary(op string, l, r func(*RuleEnv) float64) (fastNode, bool) {
	var f func(*RuleEnv) float64
	var b func(*RuleEnv) bool
	switch op {
	case "+":
		f = func(e *RuleEnv) float64 { return l(e) + r(e) }
	case "-":
		f = func(e *RuleEnv) float64 { return l(e) - r(e) }
	case "*":
		f = func(e *RuleEnv) float64 { return l(e) * r(e) }
	case "/":
		f = func(e *RuleEnv) float64 { return l(e) / r(e) }
	case "<":
		b = func(e *RuleEnv) bool { return l(e) < r(e) }
	case "<=":
		b = func(e *RuleEnv) bool { return l(e) <= r(e) }
	case ">":
		b = func(e *RuleEnv) bool { return l(e) > r(e) }
	case ">=":
		b = func(e *RuleEnv) bool { return l(e) >= r(e) }
	case "==":
		b = func(e *RuleEnv) bool { return l(e) == r(e) }
	case "!=":
		b = func(e *RuleEnv) bool { return l(e) != r(e) }
	default:
		return fastNode{}, false
	}
	if f != nil {
		return fastNode{kind: kindFloat, f: f}, true
	}
	return fastNode{kind: kindBool, b: b}, true
}
