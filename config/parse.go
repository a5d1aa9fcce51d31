package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// MaxFileSize is the largest configuration file Load reads. A gateway.hcl is a few kilobytes; anything near
// this is a mistake (a log file, a binary) and would only make the parser work hard for nothing.
const MaxFileSize = 16 << 20

// Limits on the shapes hclsyntax parses recursively: past them a hostile file could overflow the goroutine
// stack, which is fatal in Go, not a recoverable panic. Real configs stay far below.
const (
	maxNesting    = 100  // brackets, braces, parentheses and ${ } inside each other
	maxUnaryRun   = 100  // consecutive ! and - operators
	maxRecursive  = 1000 // conditionals (a ? b : c) and template directives (%{ }) in a file
	maxDiagnostic = 200  // diagnostics reported; a binary file would otherwise give one per byte
)

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "gateway"},
		{Type: "nats"},
		{Type: "supervisor"},
		{Type: "device", LabelNames: []string{"id"}},
		{Type: "sink", LabelNames: []string{"name"}},
		{Type: "sidecar", LabelNames: []string{"name"}},
		{Type: "simulator", LabelNames: []string{"name"}},
		{Type: "faults"},
		{Type: "http"},
		{Type: "rule", LabelNames: []string{"name"}},
	},
}

var deviceSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "device", LabelNames: []string{"id"}}},
}

// Error is a configuration that did not load: every problem found, and the files they point into (for
// source snippets).
type Error struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
	cause error // the I/O error when the file could not be read
}

// Error returns all diagnostics, one per line: "file:line:col: summary: detail".
func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteByte('\n')
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}

// Unwrap returns the I/O error when the file could not be read, so errors.Is(err, fs.ErrNotExist) works.
func (e *Error) Unwrap() error { return e.cause }

// WriteText writes the diagnostics for a human, with the source lines they point at.
func (e *Error) WriteText(w io.Writer, color bool) error {
	return hcl.NewDiagnosticTextWriter(w, e.Files, 0, color).WriteDiagnostics(e.Diags)
}

// Load reads and parses the configuration file at path. On failure the error is an *Error holding every problem.
func Load(path string) (*Config, error) {
	src, err := readFile(path)
	if err != nil {
		return nil, &Error{
			Diags: hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read the configuration", Detail: err.Error()}},
			cause: err,
		}
	}
	cfg, file, diags := parse(src, path)
	if diags.HasErrors() {
		return nil, &Error{Diags: diags, Files: map[string]*hcl.File{path: file}}
	}
	return cfg, nil
}

var errTooLarge = errors.New("file too large")

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d allowed", path, errTooLarge, fi.Size(), MaxFileSize)
	}
	// Not every file has a size (pipes, /dev/stdin): limit the read too.
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(src) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, errTooLarge, MaxFileSize)
	}
	return src, nil
}

// Parse parses a whole configuration. If diags.HasErrors(), the Config is nil.
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	cfg, _, diags := parse(src, filename)
	return cfg, diags
}

func parse(src []byte, filename string) (*Config, *hcl.File, hcl.Diagnostics) {
	file, diags := parseSyntax(src, filename)
	if diags.HasErrors() {
		return nil, file, limit(diags)
	}
	cfg := decodeRoot(file.Body, &diags)
	if diags.HasErrors() {
		return nil, file, limit(diags)
	}
	return cfg, file, diags
}

// ParseDevice parses a source holding exactly one `device "id" { … }` block, the same way as in a whole
// configuration file, env() included. It does not know the other devices: checking the id is not taken is the
// caller's job. If diags.HasErrors(), the Device is nil.
func ParseDevice(src []byte, filename string) (*Device, hcl.Diagnostics) {
	return parseDevice(src, filename, evalContext())
}

// ParseRuntimeDevice is ParseDevice for a device block that does not come from the configuration file: a control
// request, or a device stored by one. There env() is an error at its position: a request must not read the
// gateway's environment (secrets) onto the bus, and a stored device is text that needs nothing but literals.
func ParseRuntimeDevice(src []byte, filename string) (*Device, hcl.Diagnostics) {
	return parseDevice(src, filename, runtimeEvalContext())
}

func parseDevice(src []byte, filename string, ctx *hcl.EvalContext) (*Device, hcl.Diagnostics) {
	file, diags := parseSyntax(src, filename)
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	content, d := file.Body.Content(deviceSchema)
	diags = append(diags, d...)
	switch {
	case len(content.Blocks) == 0 && !diags.HasErrors():
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing device block",
			Detail:   `Write one device "id" { … } block.`,
			Subject:  file.Body.MissingItemRange().Ptr(),
		})
	case len(content.Blocks) > 1:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "More than one device block",
			Detail:   fmt.Sprintf("Write one device block; the first is at %s.", content.Blocks[0].DefRange),
			Subject:  content.Blocks[1].DefRange.Ptr(),
		})
	}
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	dev := decodeDevice(content.Blocks[0], ctx, &diags)
	if diags.HasErrors() {
		return nil, limit(diags)
	}
	return &dev, diags
}

// parseSyntax parses src as HCL native syntax after checking it is not shaped to exhaust the parser.
func parseSyntax(src []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	if diags := checkShape(src, filename); diags.HasErrors() {
		return &hcl.File{Bytes: src}, diags
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if file == nil {
		file = &hcl.File{Bytes: src}
	}
	return file, diags
}

// checkShape refuses input nested deeper than the parser should recurse. Lexing is linear and not recursive,
// so it is safe on any input.
func checkShape(src []byte, filename string) hcl.Diagnostics {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos) // lexing errors are the parser's to report
	tooDeep := func(tok hclsyntax.Token, what string, max int) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Configuration nested too deeply",
			Detail:   fmt.Sprintf("More than %d %s; no gateway configuration needs that many.", max, what),
			Subject:  tok.Range.Ptr(),
		}}
	}
	depth, unary, recursive := 0, 0, 0
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			if depth++; depth > maxNesting {
				return tooDeep(tok, "brackets, braces, parentheses or ${ } inside each other", maxNesting)
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenTemplateSeqEnd:
			depth = max(depth-1, 0)
		}
		switch tok.Type {
		case hclsyntax.TokenBang, hclsyntax.TokenMinus:
			if unary++; unary > maxUnaryRun {
				return tooDeep(tok, "consecutive ! or - operators", maxUnaryRun)
			}
		default:
			unary = 0
		}
		if tok.Type == hclsyntax.TokenQuestion || tok.Type == hclsyntax.TokenTemplateControl {
			if recursive++; recursive > maxRecursive {
				return tooDeep(tok, "conditional expressions and template directives", maxRecursive)
			}
		}
	}
	return nil
}

// withoutEchoes drops gohcl's "value must be known" after a failed function call: nothing in this
// configuration language is unknown, so an unknown value is the result of an error already reported at a more
// precise position, and repeating it only confuses.
func withoutEchoes(diags hcl.Diagnostics) hcl.Diagnostics {
	out := diags[:0:0]
	for _, d := range diags {
		if d.Summary == "Unsuitable value type" && strings.HasSuffix(d.Detail, "value must be known") {
			continue
		}
		out = append(out, d)
	}
	return out
}

// limit keeps the first maxDiagnostic diagnostics and says how many it dropped.
func limit(diags hcl.Diagnostics) hcl.Diagnostics {
	diags = withoutEchoes(diags)
	if len(diags) <= maxDiagnostic {
		return diags
	}
	dropped := len(diags) - maxDiagnostic
	out := append(diags[:maxDiagnostic:maxDiagnostic], &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Too many errors",
		Detail:   fmt.Sprintf("%d more errors not shown; is this really a gateway configuration?", dropped),
	})
	return out
}

// decodeRoot decodes the top-level blocks into a Config starting from Default(), reporting into diags.
func decodeRoot(body hcl.Body, diags *hcl.Diagnostics) *Config {
	content, d := body.Content(rootSchema)
	*diags = append(*diags, d...)
	cfg := Default()
	if content == nil {
		return cfg
	}
	ctx := evalContext()
	first := map[string]*hcl.Block{} // the first block of each type, or of each device id and sink name
	duplicate := func(key string, block *hcl.Block, summary, detail string) bool {
		f, dup := first[key]
		if !dup {
			first[key] = block
			return false
		}
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   fmt.Sprintf("%s; the first is at %s.", detail, f.DefRange),
			Subject:  block.DefRange.Ptr(),
		})
		return true
	}
	for _, block := range content.Blocks {
		switch block.Type {
		case "gateway", "nats", "supervisor", "faults", "http":
			if duplicate(block.Type, block, fmt.Sprintf("Duplicate %s block", block.Type),
				fmt.Sprintf("Only one %s block is allowed", block.Type)) {
				continue
			}
		}
		switch block.Type {
		case "gateway":
			decodeGateway(block, ctx, &cfg.Gateway, diags)
		case "nats":
			decodeNATS(block, ctx, &cfg.NATS, diags)
		case "supervisor":
			decodeSupervisor(block, ctx, &cfg.Supervisor, diags)
		case "http":
			decodeHTTP(block, ctx, &cfg.HTTP, diags)
		case "faults":
			var h struct {
				Enabled *bool `hcl:"enabled,optional"`
			}
			if d := gohcl.DecodeBody(block.Body, ctx, &h); d.HasErrors() {
				*diags = append(*diags, d...)
				continue
			}
			set(&cfg.Faults.Enabled, h.Enabled)
		case "device":
			dev := decodeDevice(block, ctx, diags)
			duplicate("device\x00"+dev.ID, block, "Duplicate device id",
				fmt.Sprintf("Device ids must be unique: %s is already used", quote(dev.ID)))
			cfg.Devices = append(cfg.Devices, dev)
		case "sidecar":
			sc := decodeSidecar(block, ctx, diags)
			duplicate("sidecar\x00"+sc.Name, block, "Duplicate sidecar name",
				fmt.Sprintf("Sidecar names must be unique: %s is already used", quote(sc.Name)))
			cfg.Sidecars = append(cfg.Sidecars, sc)
		case "simulator":
			sim := decodeSimulator(block, ctx, diags)
			duplicate("simulator\x00"+sim.Name, block, "Duplicate simulator name",
				fmt.Sprintf("Simulator names must be unique: %s is already used", quote(sim.Name)))
			cfg.Simulators = append(cfg.Simulators, sim)
		case "sink":
			sink := decodeSink(block, ctx, diags)
			duplicate("sink\x00"+sink.Name, block, "Duplicate sink name",
				fmt.Sprintf("Sink names must be unique: %s is already used", quote(sink.Name)))
			cfg.Sinks = append(cfg.Sinks, sink)
		case "rule":
			rule := decodeRule(block, ctx, diags)
			duplicate("rule\x00"+rule.Name, block, "Duplicate rule name",
				fmt.Sprintf("Rule names must be unique: %s is already used", quote(rule.Name)))
			cfg.Rules = append(cfg.Rules, rule)
		}
	}
	checkRules(cfg.Rules, diags)
	checkExposure(cfg, first, diags)
	checkSharedNames(cfg, diags)
	checkEndpoints(cfg, diags)
	return cfg
}

func decodeDevice(block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics) Device {
	dev := Device{ID: block.Labels[0], DefRange: block.DefRange}
	checkLabel(block, "device id", diags)
	if dev.ID == "batch" {
		addLabelError(block, "Reserved device id",
			`The device id "batch" is reserved: iot.processed.batch.{device} is the subject of a device's batches, `+
				`so iot.processed.batch.{key} of a device called batch would collide with it. Choose another id.`, diags)
	}
	dev.Driver, dev.Settings = decodeKind(block, ctx, diags, "driver", "device", drivers)
	return dev
}

func decodeSink(block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics) Sink {
	sink := Sink{Name: block.Labels[0], DefRange: block.DefRange}
	checkLabel(block, "sink name", diags)
	sink.Type, sink.Settings = decodeKind(block, ctx, diags, "type", "sink", sinkTypes)
	return sink
}

// decodeKind reads the attribute kindAttr (driver or type) of a device or sink block, then decodes the rest of
// the block into the settings registered for that kind and validates them. Settings are nil after a problem.
func decodeKind[S interface{ Validate(*Validator) }](block *hcl.Block, ctx *hcl.EvalContext, diags *hcl.Diagnostics,
	kindAttr, blockType string, registry map[string]func() S) (kind string, settings S) {
	schema := &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: kindAttr}}}
	content, rest, d := block.Body.PartialContent(schema)
	*diags = append(*diags, d...)
	v := newValidator(block, fmt.Sprintf("%s %s", blockType, quote(block.Labels[0])), diags)
	known := oneOf(sortedKeys(registry))
	attr := content.Attributes[kindAttr]
	if attr == nil {
		v.Errorf("", "The %s attribute is required; known: %s.", kindAttr, known)
		checkWithoutKind(rest, ctx, v, kindAttr, blockType == "device", diags)
		return "", settings
	}
	if d := gohcl.DecodeExpression(attr.Expr, ctx, &kind); d.HasErrors() {
		*diags = append(*diags, d...)
		checkWithoutKind(rest, ctx, v, kindAttr, blockType == "device", diags)
		return kind, settings
	}
	newSettings, ok := registry[kind]
	if !ok {
		v.Errorf(kindAttr, "unknown %s %s; known: %s", kindAttr, quote(kind), known)
		// Without the kind's schema the rest of the block cannot be decoded, but one mistake must not hide the
		// others: report what can be checked without it.
		checkWithoutKind(rest, ctx, v, kindAttr, blockType == "device", diags)
		return kind, settings
	}
	s := newSettings()
	if d := gohcl.DecodeBody(rest, ctx, s); d.HasErrors() {
		// A half-decoded block would only add misleading follow-on errors; these are the real ones.
		*diags = append(*diags, d...)
		return kind, settings
	}
	n := len(*diags)
	s.Validate(v)
	if len(*diags) > n {
		return kind, settings
	}
	return kind, s
}

// checkLabel reports a block label (device id, sink name) that cannot be a subject token, at the label.
func checkLabel(block *hcl.Block, what string, diags *hcl.Diagnostics) {
	if err := ValidToken(block.Labels[0]); err != nil {
		addLabelError(block, "Invalid "+what,
			fmt.Sprintf("The %s becomes a NATS subject token: %v.", what, err), diags)
	}
}

func addLabelError(block *hcl.Block, summary, detail string, diags *hcl.Diagnostics) {
	rng := block.DefRange
	if len(block.LabelRanges) > 0 {
		rng = block.LabelRanges[0]
	}
	*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
}

// evalContext has the functions a configuration may call: env(name) and env(name, default).
func evalContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}
}

// ErrEnvAtRunTime is the error of env() outside the configuration file.
var ErrEnvAtRunTime = errors.New("env() is only allowed in the config file")

// runtimeEvalContext knows env only to refuse it: HCL then reports "Call to function "env" failed: env() is only
// allowed in the config file" at the call, which says more than "There is no function named env".
func runtimeEvalContext() *hcl.EvalContext {
	refuse := function.New(&function.Spec{
		Params:   []function.Parameter{{Name: "name", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true}},
		VarParam: &function.Parameter{Name: "default", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
		Type: func([]cty.Value) (cty.Type, error) {
			return cty.NilType, ErrEnvAtRunTime
		},
	})
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": refuse}}
}

// envFunc takes its arguments as any type and checks them itself: a cty.String parameter would silently turn
// env(1) into env("1").
var envFunc = function.New(&function.Spec{
	Description: "The value of an environment variable, or the default (\"\" without one) when it is not set.",
	Params:      []function.Parameter{{Name: "name", Type: cty.DynamicPseudoType}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.DynamicPseudoType},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if len(args) > 2 {
			return cty.NilVal, function.NewArgErrorf(2, "env takes a variable name and an optional default, not %d arguments", len(args))
		}
		for i, a := range args {
			if a.Type() != cty.String {
				return cty.NilVal, function.NewArgErrorf(i, "must be a string, not %s", a.Type().FriendlyName())
			}
		}
		if val, ok := os.LookupEnv(args[0].AsString()); ok {
			return cty.StringVal(val), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.StringVal(""), nil
	},
})
