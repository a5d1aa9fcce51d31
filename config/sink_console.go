package config

// NewConsoleSink returns the settings of a console sink block with their defaults, for the sink's registration
// (actors/sink/console).
func NewConsoleSink() SinkSettings {
	return &ConsoleSink{Subjects: []string{"iot.processed.batch.>"}, Format: "auto"}
}

// ConsoleSink is sink type "console": it prints the messages of its subjects on stdout.
type ConsoleSink struct {
	// Subjects to subscribe to, wildcards allowed; default ["iot.processed.batch.>"]: every point once, since a
	// batch prints one line per point and iot.processed.> would add each point's own subject (point_subjects).
	Subjects []string `hcl:"subjects,optional"`
	// auto (text, or JSON when it would not be read by a human) | text | json.
	Format string `hcl:"format,optional"`
	// Queue group, optional: gateways sharing one NATS cluster then print each message once.
	Queue string `hcl:"queue,optional"`
}

var consoleFormats = []string{"auto", "text", "json"}

// Validate implements SinkSettings.
func (c *ConsoleSink) Validate(v *Validator) {
	if len(c.Subjects) == 0 {
		v.Errorf("subjects", `A console sink needs at least one subject, like ["iot.processed.batch.>"].`)
	}
	for i, s := range c.Subjects {
		if err := ValidSubject(s, true); err != nil {
			v.ErrorfIndex("subjects", i, "%v", err)
		}
	}
	if !isOneOf(c.Format, consoleFormats) {
		v.Errorf("format", "unknown format %s; known: %s", quote(c.Format), oneOf(consoleFormats))
	}
	if c.Queue != "" {
		if err := ValidSubject(c.Queue, false); err != nil {
			v.Errorf("queue", "invalid queue group: %v", err)
		}
	}
}
