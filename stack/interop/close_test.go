package interop

import (
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/tap"
)

// Shorthands for the expected paths.
const (
	est = event.Established
	fw1 = event.FinWait1
	fw2 = event.FinWait2
	cw  = event.CloseWait
	cl  = event.Closing
	la  = event.LastAck
	tw  = event.TimeWait
	cd  = event.Closed
)

// closeTimeout bounds each wait in the close tests; TIME-WAIT lasts
// shortTimeWait.
const closeTimeout = 10 * time.Second

// closeCase connects tapstack and gVisor, runs a close sequence and
// checks the states tapstack's side went through from ESTABLISHED on.
type closeCase struct {
	name  string
	cable cable
	run   func(t *testing.T, ts *conn.Conn, peer halfCloser)
	// paths are the acceptable state paths from ESTABLISHED to CLOSED.
	paths [][]event.State
}

func (cc closeCase) test(t *testing.T) {
	for _, dialer := range []string{"tapstack-dials", "gvisor-dials"} {
		t.Run(dialer, func(t *testing.T) {
			t.Parallel()
			p := newGVPair(t, cc.cable)
			ts, peer := p.connect(t, dialer, 80)
			defer peer.Close()
			defer ts.Close()
			dl := time.Now().Add(closeTimeout)
			ts.SetDeadline(dl)
			peer.SetDeadline(dl)

			cc.run(t, ts, peer)

			waitState(t, ts, closeTimeout, cd)
			waitNoConnections(t, p.ts, closeTimeout)
			// CLOSED is seen a moment before the observer hears of
			// it: the events are delivered once the engine's locks
			// are released (event.Observer).
			p.ts.TCP().SyncEvents()
			path := p.rec.path(ts.Endpoint().ID())
			if i := slices.Index(path, est); i >= 0 {
				path = path[i:]
			}
			for _, want := range cc.paths {
				if slices.Equal(path, want) {
					t.Logf("tapstack: %s", pathString(path))
					return
				}
			}
			t.Errorf("tapstack went %s; want one of:", pathString(path))
			for _, want := range cc.paths {
				t.Errorf("\t%s", pathString(want))
			}
		})
	}
}

// readEOF reads r to its end and fails the test unless it got exactly
// want bytes.
func readEOF(t *testing.T, who string, r io.Reader, want int) {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: read after %d bytes: %v", who, len(b), err)
	}
	if len(b) != want {
		t.Fatalf("%s: read %d bytes before EOF, want %d", who, len(b), want)
	}
}

// TestGVisorClose walks tapstack through every close path against
// gVisor's TCP: active, passive, simultaneous and half-close.
func TestGVisorClose(t *testing.T) {
	// The FINs of a simultaneous close cross on a slow cable.
	slow := cable{
		tsFault:   &tap.FaultConfig{Delay: 5 * time.Millisecond},
		peerFault: &tap.FaultConfig{Delay: 5 * time.Millisecond},
	}
	cases := []closeCase{{
		// RFC 9293 3.6 case 1, tapstack first: it waits for the peer's
		// FIN in FIN-WAIT-2 and then sits out TIME-WAIT.
		name: "tapstack-active",
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			if err := ts.Close(); err != nil {
				t.Fatal(err)
			}
			waitState(t, ts, closeTimeout, fw2)
			readEOF(t, "gVisor", peer, 0)
			if err := peer.Close(); err != nil {
				t.Fatal(err)
			}
			waitState(t, ts, closeTimeout, tw, cd)
		},
		paths: [][]event.State{{est, fw1, fw2, tw, cd}},
	}, {
		// Case 1 with gVisor first: tapstack reads EOF in CLOSE-WAIT,
		// then its FIN takes it through LAST-ACK.
		name: "gvisor-active",
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			if err := peer.Close(); err != nil {
				t.Fatal(err)
			}
			readEOF(t, "tapstack", ts, 0)
			waitState(t, ts, closeTimeout, cw)
			if err := ts.Close(); err != nil {
				t.Fatal(err)
			}
		},
		paths: [][]event.State{{est, cw, la, cd}},
	}, {
		// Case 2: both close at once; on a cable with 5 ms of delay each
		// way the FINs cross, so tapstack gets a FIN that does not ack
		// its own, in FIN-WAIT-1: CLOSING.
		name:  "simultaneous",
		cable: slow,
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, c := range []io.Closer{ts, peer} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if err := c.Close(); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
		},
		paths: [][]event.State{{est, fw1, cl, tw, cd}},
	}, {
		// Both at once on a fast cable: any legal path will do, but it
		// must end in CLOSED.
		name: "simultaneous-fast",
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for _, c := range []io.Closer{ts, peer} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if err := c.Close(); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
		},
		paths: [][]event.State{
			{est, fw1, cl, tw, cd},
			{est, fw1, fw2, tw, cd},
			{est, fw1, tw, cd},
			{est, cw, la, cd},
		},
	}, {
		// Half-close, tapstack first: after its FIN it keeps receiving in
		// FIN-WAIT-2 until gVisor has sent 1 MiB and its own FIN.
		name: "tapstack-half-close",
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			if err := ts.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			readEOF(t, "gVisor", peer, 0)
			waitState(t, ts, closeTimeout, fw2)
			sent, got := flow(peer, ts, MiB, 3)
			checkFlow(t, "gVisor->tapstack after tapstack's FIN", sent, got)
			waitState(t, ts, closeTimeout, tw, cd)
			if err := peer.Close(); err != nil {
				t.Fatal(err)
			}
			if err := ts.Close(); err != nil {
				t.Fatal(err)
			}
		},
		paths: [][]event.State{{est, fw1, fw2, tw, cd}},
	}, {
		// Half-close, gVisor first: tapstack sends 1 MiB in CLOSE-WAIT and
		// closes with data still queued; the FIN must follow all of it.
		name: "gvisor-half-close",
		run: func(t *testing.T, ts *conn.Conn, peer halfCloser) {
			if err := peer.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			readEOF(t, "tapstack", ts, 0)
			waitState(t, ts, closeTimeout, cw)
			var got digest
			done := make(chan struct{})
			go func() {
				defer close(done)
				got = receive(peer)
			}()
			sent := send(ts, MiB, 4)
			if err := ts.Close(); err != nil {
				t.Fatal(err)
			}
			<-done
			checkFlow(t, "tapstack->gVisor after gVisor's FIN", sent, got)
			if err := peer.Close(); err != nil {
				t.Fatal(err)
			}
		},
		paths: [][]event.State{{est, cw, la, cd}},
	}}
	for _, cc := range cases {
		t.Run(cc.name, cc.test)
	}
}
