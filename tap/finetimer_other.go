//go:build !linux

package tap

import "time"

// openFine leaves t coarse: there is no timerfd here.
func (t *fineTimer) openFine() {}

// setFine is never called without a timerfd.
func (t *fineTimer) setFine(time.Duration) bool { return false }
