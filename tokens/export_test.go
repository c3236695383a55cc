package tokens

import "time"

// WaitReloadGap sleeps past keyReloadGap.
func WaitReloadGap() { time.Sleep(keyReloadGap + 50*time.Millisecond) }
