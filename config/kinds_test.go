package config

// The kinds register themselves from their own packages (actors/…, through actors.RegisterDevice), which this
// package's tests cannot import: they register the schemas of the built-in kinds they decode here instead.
func init() {
	RegisterDriver("mock", NewMockDevice)
	RegisterDriver("modbus", NewModbusDevice)
	RegisterSink("console", NewConsoleSink)
	RegisterSink("jetstream", NewJetStreamSink)
}
