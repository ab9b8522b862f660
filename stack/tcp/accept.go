package tcp

// acceptQueue holds established connections until Accept takes them. Its
// limit follows Linux's meaning of the listen(2) backlog: the queue is full
// only when it holds more than backlog connections (sk_acceptq_is_full
// compares with ">"), so it holds backlog+1, and a backlog of 0 still
// admits one connection.
type acceptQueue struct {
	conns []*Endpoint
	limit int
	// reserved counts connections admitted by a final ACK whose move into
	// the queue is under way, so that check and add are one decision.
	reserved int
}

func newAcceptQueue(backlog int) acceptQueue {
	return acceptQueue{limit: backlog + 1}
}

func (q *acceptQueue) len() int   { return len(q.conns) }
func (q *acceptQueue) full() bool { return len(q.conns)+q.reserved >= q.limit }

func (q *acceptQueue) push(e *Endpoint) {
	if q.reserved > 0 {
		q.reserved--
	}
	q.conns = append(q.conns, e)
}

func (q *acceptQueue) pop() *Endpoint {
	if len(q.conns) == 0 {
		return nil
	}
	e := q.conns[0]
	q.conns[0] = nil
	q.conns = q.conns[1:]
	return e
}

func (q *acceptQueue) remove(e *Endpoint) bool {
	for i, c := range q.conns {
		if c == e {
			q.conns = append(q.conns[:i], q.conns[i+1:]...)
			return true
		}
	}
	return false
}

func (q *acceptQueue) drain() []*Endpoint {
	out := q.conns
	q.conns = nil
	q.reserved = 0
	return out
}
