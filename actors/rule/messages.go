package rule

// Requests a rule actor answers (from the runtime's control plane, through protoactor requests).

// ListAlerts asks an alert rule for its active alerts; the reply is an *AlertList.
type ListAlerts struct{}

// AlertList is the reply to ListAlerts.
type AlertList struct{ Alerts []Alert }

// AckAlert acknowledges the alert with this de-duplication key; the reply is an *AckReply.
type AckAlert struct {
	Key string
	By  string
}

// AckReply says whether the rule had the alert.
type AckReply struct{ Found bool }

// GetStats asks a rule for its figures; the reply is a *StatsReply.
type GetStats struct{}

// StatsReply is the reply to GetStats.
type StatsReply struct{ Stats Stats }
