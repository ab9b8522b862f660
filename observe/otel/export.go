package otel

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	otelapi "go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Bounds of the export queue of NewOTLPProvider, the SDK batch span
// processor's defaults.
const (
	DefaultMaxQueueSize   = 2048             // spans waiting for export; more are dropped
	DefaultMaxExportBatch = 512              // spans per export request
	DefaultBatchDelay     = 5 * time.Second  // the longest a span waits for a batch to fill
	DefaultExportTimeout  = 30 * time.Second // the longest one export request may take
)

// ExportStats counts the spans an OTLPProvider was given and what became
// of them: Spans = Exported + Failed + Dropped + Pending.
type ExportStats struct {
	Spans    uint64 // spans ended (and sampled): handed to the export queue
	Exported uint64 // spans the collector accepted
	Failed   uint64 // spans of requests that failed: collector down, refusing, too slow, answering an error or garbage
	Dropped  uint64 // spans dropped because the queue was full (the collector slower than the spans come), or ended after Shutdown
	// Pending are queued or being exported now; after a Shutdown that
	// returned at its deadline, the spans it gave up on.
	Pending   uint64
	LastError error // the last export's error, if any failed
}

// Undelivered is how many spans did not reach the collector, or have
// not yet.
func (s ExportStats) Undelivered() uint64 { return s.Spans - s.Exported }

// OTLPProvider is the TracerProvider NewOTLPProvider makes: the SDK's,
// exporting through a bounded queue whose fate ExportStats counts.
type OTLPProvider struct {
	*sdktrace.TracerProvider
	q *exportQueue
}

// ExportStats returns the provider's export counters.
func (p *OTLPProvider) ExportStats() ExportStats { return p.q.stats() }

// exportQueue is a span processor that exports in batches, as the SDK's
// batch span processor does, and counts what it could not deliver, which
// the SDK's only logs at debug level. Ending a span never waits on the
// network: the engine's goroutines end spans (the Tracer observes
// synchronously), and a full queue drops the span and counts it.
type exportQueue struct {
	exp      sdktrace.SpanExporter
	queue    chan sdktrace.ReadOnlySpan
	maxBatch int
	delay    time.Duration
	timeout  time.Duration

	flush    chan chan struct{} // ForceFlush's requests
	stop     chan struct{}      // closed by Shutdown
	stopOnce sync.Once
	stopped  atomic.Bool
	done     chan struct{} // closed when run has returned
	// exportCtx is the parent of every export; Shutdown cancels it when
	// its deadline passes, so that the export in flight gives up.
	exportCtx context.Context
	cancel    context.CancelFunc

	spans, exported, failed, dropped atomic.Uint64
	mu                               sync.Mutex
	lastErr                          error
}

func newExportQueue(exp sdktrace.SpanExporter) *exportQueue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &exportQueue{
		exp:       exp,
		queue:     make(chan sdktrace.ReadOnlySpan, DefaultMaxQueueSize),
		maxBatch:  DefaultMaxExportBatch,
		delay:     DefaultBatchDelay,
		timeout:   DefaultExportTimeout,
		flush:     make(chan chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		exportCtx: ctx,
		cancel:    cancel,
	}
	go q.run()
	return q
}

func (q *exportQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s for export, or drops and counts it if the queue is full.
func (q *exportQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	q.spans.Add(1)
	if q.stopped.Load() {
		q.dropped.Add(1)
		return
	}
	select {
	case q.queue <- s:
	default:
		q.dropped.Add(1)
	}
}

// run exports a batch when it is full, when the oldest span in it has
// waited the delay, on ForceFlush, and what is queued on Shutdown.
func (q *exportQueue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.maxBatch)
	timer := time.NewTimer(q.delay)
	defer timer.Stop()
	for {
		select {
		case s := <-q.queue:
			batch = append(batch, s)
			if len(batch) == q.maxBatch {
				batch = q.export(batch)
				timer.Reset(q.delay)
			}
		case <-timer.C:
			batch = q.export(batch)
			timer.Reset(q.delay)
		case done := <-q.flush:
			batch = q.exportQueued(batch)
			close(done)
		case <-q.stop:
			q.exportQueued(batch)
			return
		}
	}
}

// exportQueued exports batch and the spans queued now, a batch at a
// time: what is queued meanwhile waits for the next round.
func (q *exportQueue) exportQueued(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for range len(q.queue) {
		batch = append(batch, <-q.queue)
		if len(batch) == q.maxBatch {
			batch = q.export(batch)
		}
	}
	return q.export(batch)
}

// export sends batch in one request and counts the outcome; it returns
// batch emptied, its spans released.
func (q *exportQueue) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(q.exportCtx, q.timeout)
	err := q.exp.ExportSpans(ctx, batch)
	cancel()
	if err != nil {
		q.failed.Add(uint64(len(batch)))
		q.mu.Lock()
		q.lastErr = err
		q.mu.Unlock()
		otelapi.Handle(err) // as the SDK's batcher reports it
	} else {
		q.exported.Add(uint64(len(batch)))
	}
	clear(batch)
	return batch[:0]
}

// ForceFlush exports what is queued now.
func (q *exportQueue) ForceFlush(ctx context.Context) error {
	if q.stopped.Load() {
		return nil
	}
	done := make(chan struct{})
	select {
	case q.flush <- done:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued and shuts the exporter down. At ctx's
// deadline it returns ctx's error, and the export in flight is cancelled:
// what it held is counted as failed, what is still queued stays pending.
func (q *exportQueue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() {
		q.stopped.Store(true)
		close(q.stop)
	})
	shut := make(chan error, 1)
	go func() {
		<-q.done
		shut <- q.exp.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		return err
	case <-ctx.Done():
		q.cancel()
		return ctx.Err()
	}
}

func (q *exportQueue) stats() ExportStats {
	// Spans is counted first and loaded last: it is never less than
	// the sum of the others.
	s := ExportStats{Exported: q.exported.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load()}
	s.Spans = q.spans.Load()
	s.Pending = s.Spans - s.Exported - s.Failed - s.Dropped
	q.mu.Lock()
	s.LastError = q.lastErr
	q.mu.Unlock()
	return s
}
