// Command backlog shows what a full accept queue does, in memory and with
// no privileges.
//
// A server listens with backlog 2, so its accept queue holds 3 (Linux's
// meaning of listen(2)'s backlog: backlog+1). Nobody accepts. Five clients
// dial at once. The first three complete and wait in the accept queue; the
// others find it full: their final ACKs are dropped (the client believes it
// is connected; the server retransmits its SYN-ACK). A latecomer's SYN is
// dropped too (the client retransmits it). Then the server drains the queue by accepting,
// and every client gets in. Each queue decision is printed as it happens,
// then the counters:
//
//	go run ./examples/backlog
//	go run ./examples/backlog -clients 8 -rto 200ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "backlog:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("backlog", flag.ContinueOnError)
	backlog := fs.Int("backlog", 2, "listen backlog; the accept queue holds backlog+1")
	clients := fs.Int("clients", 5, "clients dialing at once")
	rto := fs.Duration("rto", time.Second, "initial retransmission timeout of SYN and SYN-ACK (Linux: 1s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	out := &syncWriter{w: w, start: time.Now()}

	a, b := tap.Pipe()
	server := stack.New(stack.Options{TCP: tcp.Options{InitialRTO: *rto, Observer: out.observe}})
	defer server.Close()
	client := stack.New(stack.Options{TCP: tcp.Options{InitialRTO: *rto}})
	defer client.Close()
	if _, err := server.AddNIC(a, netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		return err
	}
	if _, err := client.AddNIC(b, netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		return err
	}
	lc := conn.ListenConfig{Backlog: *backlog}
	if *backlog == 0 {
		lc.Backlog = -1 // conn's way of saying a real backlog of 0
	}
	ln, err := lc.Listen(server, "tcp", "192.0.2.1:80")
	if err != nil {
		return err
	}
	defer ln.Close()
	out.printf("listening with backlog %d: the accept queue holds %d; nobody accepts yet", *backlog, ln.Engine().Queues().AcceptQueueLimit)

	// The clients dial at once. Dial returns when the client has the
	// SYN-ACK, whether or not the server kept the connection.
	errs := make(chan error, *clients+1)
	dial := func(i int) {
		c, err := conn.DialContext(ctx, client, "tcp", "192.0.2.1:80")
		if err != nil {
			errs <- fmt.Errorf("client %d: %w", i, err)
			return
		}
		out.printf("client %d: Dial returned on %v (the client believes it is connected)", i, c.LocalAddr())
	}
	for i := range *clients {
		go dial(i)
	}

	// Nobody accepts for a while: long enough for the SYN-ACKs of the
	// unlucky clients to be retransmitted and their ACKs dropped again.
	if err := sleep(ctx, 3**rto/2); err != nil {
		return err
	}
	q := ln.Engine().Queues()
	out.printf("--- SYN queue %d, accept queue %d/%d; a latecomer dials", q.SynQueueLen, q.AcceptQueueLen, q.AcceptQueueLimit)
	go dial(*clients) // its SYN finds the accept queue full
	if err := sleep(ctx, *rto/2); err != nil {
		return err
	}
	out.printf("--- now the server drains the accept queue")

	deadline, cancel := context.WithTimeout(ctx, 40**rto)
	defer cancel()
	defer context.AfterFunc(deadline, func() { ln.SetDeadline(time.Now()) })()
	for i := range *clients + 1 {
		c, err := ln.AcceptTCP()
		if err != nil {
			return fmt.Errorf("accept #%d: %w", i, err)
		}
		out.printf("accepted %v", c.RemoteAddr())
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	ln.Close()
	st := server.TCP().Stats()
	out.printf("--- every client accepted; server counters:")
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"SYN queued", st.Listen.SynQueued.Load()},
		{"SYN-ACK retransmitted", st.Sent(tcp.SendSynAckRetransmit)},
		{"SYN dropped: accept queue full", st.Listen.SynAcceptQueueFull.Load()},
		{"SYN queue overflow", st.Listen.SynQueueOverflows.Load()},
		{"SYN cookies sent", st.Listen.CookiesSent.Load()},
		{"accept queue add", st.Listen.AcceptQueueAdds.Load()},
		{"accept queue overflow: ACK dropped", st.Listen.AcceptOverflowDrops.Load()},
		{"accept queue overflow: RST sent", st.Listen.AcceptOverflowResets.Load()},
		{"accepted", st.Listen.Accepted.Load()},
		{"half-open expired", st.Listen.HalfOpenExpired.Load()},
		{"ListenOverflows", st.ListenOverflows.Load()},
		{"ListenDrops", st.ListenDrops.Load()},
	} {
		fmt.Fprintf(w, "  %-36s %d\n", c.name, c.n)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// syncWriter prints lines stamped with the time since start; the server's
// observer and the clients' goroutines print concurrently.
type syncWriter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, "%6.3fs  %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// observe prints the server's listen decisions: queue events, the drops
// they cause, SYN-ACK retransmissions and the half-open entries' states.
// It must not block: it runs inside the engine.
func (s *syncWriter) observe(ev tcp.Event) {
	switch {
	case ev.Kind == tcp.EventQueue:
		s.printf("server %s", ev)
	case ev.Kind == tcp.EventDrop && (ev.Drop == tcp.DropAcceptQueueFull || ev.Drop == tcp.DropSynQueueFull):
		s.printf("server %s", ev)
	case ev.Kind == tcp.EventSend && ev.Send == tcp.SendSynAckRetransmit:
		s.printf("server %s", ev)
	case ev.Kind == tcp.EventState && (ev.From == tcp.SynReceived || ev.To == tcp.SynReceived):
		s.printf("server %s %s -> %s", ev.Conn, ev.From, ev.To)
	}
}
