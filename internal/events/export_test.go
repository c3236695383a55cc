package events

import "maps"

// DroppedByType is how many events of each type were dropped because their
// queue was full; types never dropped are absent.
func (w *Webhook) DroppedByType() map[string]uint64 {
	w.dropMu.Lock()
	defer w.dropMu.Unlock()
	return maps.Clone(w.dropped)
}
