package postgres

// Polls counts the follower's successful reads of the change log.
func Polls(p *Postgres) int64 { return p.follow.polls.Load() }

// StopFollowing stops the follower, as a node cut off from the log.
func StopFollowing(p *Postgres) { p.follow.stop() }
