package stack_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
)

func TestEventQueueDeliversInOrder(t *testing.T) {
	var got []event.SendCause
	var mu sync.Mutex
	obs, q := stack.NewEventQueue(100, func(ev event.Event) {
		mu.Lock()
		got = append(got, ev.Send)
		mu.Unlock()
	})
	for i := range 50 {
		obs(event.Event{Kind: event.KindSend, Send: event.SendCause(i % 10)})
	}
	q.Close()
	if len(got) != 50 || q.Dropped() != 0 {
		t.Fatalf("delivered %d, dropped %d; want 50, 0", len(got), q.Dropped())
	}
	for i, c := range got {
		if c != event.SendCause(i%10) {
			t.Fatalf("event %d out of order: %v", i, c)
		}
	}
	obs(event.Event{})
	if q.Dropped() != 1 {
		t.Errorf("event after Close: dropped %d, want 1", q.Dropped())
	}
}

// A consumer that blocks never stalls the observer: events beyond the
// queue are dropped and counted.
func TestEventQueueSlowConsumer(t *testing.T) {
	release := make(chan struct{})
	var delivered atomic.Int64
	obs, q := stack.NewEventQueue(4, func(event.Event) {
		<-release
		delivered.Add(1)
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			obs(event.Event{Kind: event.KindState})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the observer blocked")
	}
	close(release)
	q.Close()
	if n := delivered.Load(); n+int64(q.Dropped()) != 1000 || n > 5 || n < 1 {
		t.Errorf("delivered %d, dropped %d", n, q.Dropped())
	}
}

func TestEventQueueConcurrent(t *testing.T) {
	var n atomic.Int64
	obs, q := stack.NewEventQueue(64, func(event.Event) { n.Add(1) })
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				obs(event.Event{})
			}
		}()
	}
	wg.Wait()
	q.Close()
	if got := n.Load() + int64(q.Dropped()); got != 4000 {
		t.Errorf("delivered+dropped = %d, want 4000", got)
	}
	if q.Len() != 0 {
		t.Errorf("%d events left after Close", q.Len())
	}
}

func TestFanout(t *testing.T) {
	if stack.Fanout(nil, nil) != nil {
		t.Error("Fanout of nothing is not nil")
	}
	var a, b int
	f := stack.Fanout(func(event.Event) { a++ }, nil, func(event.Event) { b++ })
	f(event.Event{})
	f(event.Event{})
	if a != 2 || b != 2 {
		t.Errorf("a=%d b=%d, want 2 2", a, b)
	}
}
