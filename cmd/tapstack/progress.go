package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Progress of long transfers (bench, dial with large input): bytes,
// rate and retransmits on one line of a terminal, rewritten in place
// every progressEvery; nothing at all when the output is not a terminal,
// so logs, pipes and tests stay clean.

const (
	progressEvery = 250 * time.Millisecond
	// progressAfter: a transfer shorter than this shows nothing.
	progressAfter = 500 * time.Millisecond
)

// progress reports one transfer. Its methods are safe for concurrent use;
// a nil *progress does nothing.
type progress struct {
	w     io.Writer
	label string
	total int64 // bytes expected, 0 if unknown
	start time.Time
	bytes atomic.Int64

	mu    sync.Mutex
	retx  func() uint64 // retransmits so far, if known
	shown bool
	stop  chan struct{}
	done  chan struct{}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// newProgress starts reporting on w, or returns nil (which reports
// nothing) when w is not a terminal.
func newProgress(w io.Writer, label string, total int64) *progress {
	if !isTerminal(w) {
		return nil
	}
	p := &progress{w: w, label: label, total: total, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// add counts n more bytes moved.
func (p *progress) add(n int) {
	if p != nil {
		p.bytes.Add(int64(n))
	}
}

// expect sets the bytes the transfer will move.
func (p *progress) expect(total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
}

// retransmits sets where the retransmit count comes from.
func (p *progress) retransmits(f func() uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.retx = f
	p.mu.Unlock()
}

// reader counts what is read through r.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return progressReader{r, p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(n)
	return n, err
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if time.Since(p.start) >= progressAfter {
				p.print()
			}
		}
	}
}

func (p *progress) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.bytes.Load()
	el := time.Since(p.start).Seconds()
	line := fmt.Sprintf("%s: %s", p.label, mib(n))
	if p.total > 0 {
		line += fmt.Sprintf(" of %s (%.0f%%)", mib(p.total), 100*float64(n)/float64(p.total))
	}
	if el > 0 {
		line += fmt.Sprintf(", %.1f MB/s", float64(n)/el/1e6)
	}
	if p.retx != nil {
		line += fmt.Sprintf(", %d retransmits", p.retx())
	}
	// \r and erase to the end of the line: one line, rewritten.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

// end stops reporting and leaves the terminal's line clean.
func (p *progress) end() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

type progressKey struct{}

// withProgress hands p to the code that moves the bytes.
func withProgress(ctx context.Context, p *progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

// progressFrom returns the progress ctx carries, or nil.
func progressFrom(ctx context.Context) *progress {
	p, _ := ctx.Value(progressKey{}).(*progress)
	return p
}
