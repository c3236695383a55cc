//go:build race

package tokens_test

// raceEnabled: the race detector makes sync.Pool drop objects at random,
// so pooled buffers (the JSON decoder's) are sometimes allocated anew.
const raceEnabled = true
