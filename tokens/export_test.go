package tokens

import "time"

// Len is the number of cached tokens.
func (c *Cache) Len() int { return c.lru.Len() }

// WaitReloadGap sleeps past keyReloadGap.
func WaitReloadGap() { time.Sleep(keyReloadGap + 50*time.Millisecond) }
