package protocol

// unavailableRetry is the Retry-After (seconds) of a 503 answered while the
// store cannot be reached: a PostgreSQL restart or failover takes seconds.
const unavailableRetry = 2

// unavailableText is what a client is told; the driver's message is logged,
// never sent.
const unavailableText = "The user store is temporarily unavailable; retry later."
