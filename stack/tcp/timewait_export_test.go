package tcp

// OnTimeWaitTaken sets fn to run when the TIME-WAIT timer has taken due
// records out of the table, before it reports them CLOSED.
func OnTimeWaitTaken(p *Protocol, fn func()) { p.timeWaitTaken = fn }
