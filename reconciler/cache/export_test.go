package cache

// Hooks for the external tests (package cache_test).

// PendingEchoes is how many written objects c still waits to see back.
func PendingEchoes(c *Cache) int {
	c.echoMu.Lock()
	defer c.echoMu.Unlock()
	return len(c.echoes)
}
