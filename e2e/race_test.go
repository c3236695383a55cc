//go:build race

package e2e

// raceEnabled is true when the tests run under -race; TestMain then builds
// the Caddy child process with -race too, so the HTTP layer runs under the
// race detector in the end-to-end tests.
const raceEnabled = true
