package events

// Noisy reports whether events of type typ are noisy: triggered by whoever
// sends requests, at the rate they send them. The webhook outbox coalesces
// noisy events and delivers them after the others, so a flood of them can
// never delay or crowd out the lifecycle and security events (guest.created,
// guest.upgraded, guest.expired, user.deleted, session.revoked,
// refresh.reuse_detected). Only [SignInThrottled] is noisy; an unknown type
// is not.
func Noisy(typ string) bool { return typ == SignInThrottled }

// Data keys a webhook adds to each noisy event it sends.
const (
	// DataCount is how many occurrences the delivered event stands for: 1
	// for the first of a burst, more for a summary.
	DataCount = "count"
	// DataSince is, in a summary, the time of the first occurrence it
	// counts (RFC 3339, UTC); the event's time is that of the last.
	DataSince = "since"
)
