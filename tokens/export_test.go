package tokens

// Len is the number of cached tokens.
func (c *Cache) Len() int { return c.lru.Len() }
