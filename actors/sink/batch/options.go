package batch

import (
	"time"

	"github.com/iotgw/iotgw/config"
)

// Texts are the batching settings as a sink block writes them; each sink's Settings has these attributes (gohcl
// decodes no embedded structs, so they are repeated there) and hands them to Parse.
type Texts struct {
	Subjects      []string
	BatchSize     int
	FlushInterval string
	MaxAckPending int
	Retry         string
	MaxRetry      string
	Timeout       string
}

// Limits an operator may write: generous, but a typo must not exhaust the machine.
const (
	maxBatchSize     = 1_000_000
	maxAckPendingCap = 1_000_000
)

// Parse validates t, reporting at the attributes' file:line:column, and returns the options.
func Parse(v *config.Validator, t Texts) Options {
	o := Options{Subjects: t.Subjects, BatchSize: t.BatchSize, MaxAckPending: t.MaxAckPending}
	if len(t.Subjects) == 0 {
		v.Errorf("subjects", `This sink needs at least one subject, like ["iot.processed.batch.>"].`)
	}
	for i, s := range t.Subjects {
		if err := config.ValidSubject(s, true); err != nil {
			v.ErrorfIndex("subjects", i, "%v", err)
		}
	}
	if t.BatchSize < 1 || t.BatchSize > maxBatchSize {
		v.Errorf("batch_size", "batch_size is %d: from 1 to %d points", t.BatchSize, maxBatchSize)
	}
	if t.MaxAckPending < 1 || t.MaxAckPending > maxAckPendingCap {
		v.Errorf("max_ack_pending", "max_ack_pending is %d: from 1 to %d", t.MaxAckPending, maxAckPendingCap)
	}
	var ok bool
	if o.FlushInterval, ok = v.Duration("flush_interval", t.FlushInterval); ok && (o.FlushInterval < time.Millisecond || o.FlushInterval > time.Hour) {
		v.Errorf("flush_interval", "flush_interval %q is out of range: from 1ms to 1h", t.FlushInterval)
	}
	if o.Retry, ok = v.Duration("retry", t.Retry); ok && (o.Retry < time.Millisecond || o.Retry > time.Hour) {
		v.Errorf("retry", "retry %q is out of range: from 1ms to 1h", t.Retry)
	}
	if o.MaxRetry, ok = v.Duration("max_retry", t.MaxRetry); ok && (o.MaxRetry < o.Retry || o.MaxRetry > time.Hour) {
		v.Errorf("max_retry", "max_retry %q is out of range: from retry (%s) to 1h", t.MaxRetry, t.Retry)
	}
	if o.Timeout, ok = v.Duration("timeout", t.Timeout); ok && (o.Timeout < time.Millisecond || o.Timeout > 10*time.Minute) {
		v.Errorf("timeout", "timeout %q is out of range: from 1ms to 10m", t.Timeout)
	}
	return o
}
