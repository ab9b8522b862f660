package stack

import (
	"sync"

	"github.com/tapstack/tapstack/event"
)

// EventQueue delivers engine events to a slow consumer on its own
// goroutine. The engine calls observers synchronously, sometimes with a
// connection's lock held; the observer an EventQueue returns only appends
// to a bounded queue and never blocks. When the queue is full, events are
// dropped and counted.
type EventQueue struct {
	fn func(event.Event)

	mu      sync.Mutex
	buf     []event.Event // ring of len(buf) slots
	head, n int
	dropped uint64
	closed  bool
	wake    chan struct{} // capacity 1: "there is something to do"
	done    chan struct{} // closed when the goroutine has exited
}

// NewEventQueue returns an observer to set as tcp.Options.Observer (alone
// or through [Fanout]) and the queue behind it. One goroutine calls fn
// with each event, in order; size bounds the events waiting (minimum 1).
// Close stops the goroutine.
func NewEventQueue(size int, fn func(event.Event)) (event.Observer, *EventQueue) {
	size = max(size, 1)
	q := &EventQueue{
		fn:   fn,
		buf:  make([]event.Event, size),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go q.run()
	return q.push, q
}

// push is the observer: it never blocks.
func (q *EventQueue) push(ev event.Event) {
	q.mu.Lock()
	if q.closed || q.n == len(q.buf) {
		q.dropped++
		q.mu.Unlock()
		return
	}
	q.buf[(q.head+q.n)%len(q.buf)] = ev
	q.n++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *EventQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for q.n == 0 {
			if q.closed {
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		ev := q.buf[q.head]
		q.buf[q.head] = event.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.mu.Unlock()
		q.fn(ev)
	}
}

// Dropped returns how many events were dropped because the queue was full
// (or closed).
func (q *EventQueue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Len returns how many events are waiting.
func (q *EventQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Close stops accepting events, lets the goroutine deliver those already
// queued, and waits for it to exit. Events observed afterwards are
// dropped and counted. Close must not be called from fn.
func (q *EventQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}

// Fanout returns an observer that calls each non-nil observer in turn,
// or nil if there is none.
func Fanout(observers ...event.Observer) event.Observer {
	var obs []event.Observer
	for _, o := range observers {
		if o != nil {
			obs = append(obs, o)
		}
	}
	switch len(obs) {
	case 0:
		return nil
	case 1:
		return obs[0]
	}
	return func(ev event.Event) {
		for _, o := range obs {
			o(ev)
		}
	}
}
