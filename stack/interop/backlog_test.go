//go:build linux

package interop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack"
)

// backlogClients is how many clients dial a listener with backlog 2 at
// once: many more than its accept queue (backlog+1 = 3) holds.
const backlogClients = 12

// drainLater waits until the listener has overflowed (or 3 s passed), then
// accepts every client and echoes one line to each. It returns when all
// want connections were served or the deadline passed.
func drainLater(t *testing.T, s *stack.Stack, ln *conn.Listener, want int) {
	t.Helper()
	st := s.TCP().Stats()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && st.ListenOverflows.Load() == 0; {
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ln.SetDeadline(time.Now().Add(60 * time.Second))
	for i := 0; i < want; i++ {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept %d of %d: %v", i+1, want, err)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Errorf("server read: %v", err)
				return
			}
			fmt.Fprint(c, line)
		}()
	}
}

// checkBacklogCounters: every client was accepted once, and the overflow
// the test provoked is in the counters.
func checkBacklogCounters(t *testing.T, s *stack.Stack, ln *conn.Listener) {
	t.Helper()
	st := s.TCP().Stats()
	if got := st.Listen.Accepted.Load(); got != backlogClients {
		t.Errorf("Accepted = %d, want %d", got, backlogClients)
	}
	if got := st.Listen.AcceptQueueAdds.Load(); got != backlogClients {
		t.Errorf("AcceptQueueAdds = %d, want %d", got, backlogClients)
	}
	if st.ListenOverflows.Load() == 0 {
		t.Errorf("ListenOverflows = 0; %d clients against backlog 2 should overflow", backlogClients)
	}
	if q := ln.Endpoint().Queues(); q.AcceptQueueLen != 0 || q.SynQueueLen != 0 || q.AcceptQueueLimit != 3 {
		t.Errorf("queues after draining: %+v; want empty, accept limit 3", q)
	}
	t.Logf("overflows %d, SYNs dropped with the accept queue full %d, final ACKs dropped %d, SYN-ACK retransmits %d",
		st.ListenOverflows.Load(), st.Listen.SynAcceptQueueFull.Load(), st.Listen.AcceptOverflowDrops.Load(), st.Sent(event.SendSynAckRetransmit))
}

// TestBacklogKernelClients: many Linux clients (nc in the namespace) dial
// a tapstack listener with backlog 2 that accepts nothing at first. Linux
// behaviour: excess SYNs and final ACKs are dropped, the clients
// retransmit, and once the application drains the queue every client is
// served; none is black-holed.
func TestBacklogKernelClients(t *testing.T) {
	k := newKernelNet(t, "nc")
	ln, err := (&conn.ListenConfig{Backlog: 2}).Listen(k.ts, "tcp4", tapAddr+":9100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
	defer cancel()
	outs := make([]string, backlogClients)
	var wg sync.WaitGroup
	for i := range backlogClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := k.ns.Exec(ctx, "sh", "-c", fmt.Sprintf("echo client-%d | nc -N -w 30 %s 9100", i, tapAddr)).CombinedOutput()
			if err != nil {
				t.Errorf("client %d: %v: %s", i, err, out)
			}
			outs[i] = string(out)
		}()
	}
	drainLater(t, k.ts, ln, backlogClients)
	wg.Wait()
	for i, out := range outs {
		if want := fmt.Sprintf("client-%d", i); strings.TrimSpace(out) != want {
			t.Errorf("client %d got %q, want %q", i, out, want)
		}
	}
	checkBacklogCounters(t, k.ts, ln)
}

// TestBacklogGVisorClients is the same with gVisor TCP clients in memory.
func TestBacklogGVisorClients(t *testing.T) {
	p := newGVPair(t, cable{})
	ln, err := (&conn.ListenConfig{Backlog: 2}).Listen(p.ts, "tcp", net.JoinHostPort(p.tsAddr.String(), "9100"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	for i := range backlogClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.peer.Dial(netip.AddrPortFrom(p.tsAddr, 9100))
			if err != nil {
				t.Errorf("client %d dial: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			want := fmt.Sprintf("client-%d\n", i)
			fmt.Fprint(c, want)
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || got != want {
				t.Errorf("client %d got %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	drainLater(t, p.ts, ln, backlogClients)
	wg.Wait()
	checkBacklogCounters(t, p.ts, ln)
}
