package tcp_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tapstack/tapstack/event"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// The off-path attack of CVE-2016-5696 (RFC 5961 10): an attacker who
// owns a connection to the stack counts the challenge ACKs it can provoke
// on it in one second. With one fixed stack-wide budget, one fewer than
// usual means that a RST it spoofed toward another connection (the
// victim) landed in the victim's window and cost a challenge ACK of the
// budget, which narrows the victim's sequence numbers down.

// repliesByPort reads every segment the stack sent and counts them by
// destination (peer) port.
func repliesByPort(p *tcptest.Peer) map[uint16]int {
	n := make(map[uint16]int)
	for range 1 << 20 {
		pkt := p.Link.Read()
		if pkt == nil {
			break
		}
		v := pkt.ToView()
		pkt.DecRef()
		b := v.AsSlice()
		ip := header.IPv4(b)
		if len(b) >= header.IPv4MinimumSize+header.TCPMinimumSize {
			n[header.TCP(b[ip.HeaderLength():]).DestinationPort()]++
		}
		v.Release()
	}
	return n
}

// spoofedRST returns the victim's RST packet: at seq 1000, in its window
// but not at RCV.NXT (a challenge ACK), when hit; far outside its window
// (silently dropped) otherwise.
func spoofedRST(p *tcptest.Peer, victim uint16, hit bool) []byte {
	p.PeerPort = victim
	seq := uint32(1 << 31)
	if hit {
		seq = 1000
	}
	return peerIPv4(p.Encode(seg{Flags: "R", Seq: seq}))
}

// TestChallengeAckNoSideChannel: the attacker's own connection gets the
// same number of challenge ACKs whether or not its spoofed RST hit the
// victim's window, trial after trial: the per-connection limit (one per
// InvalidRateLimit) holds it to one, far below the stack-wide budget, so
// it can neither exhaust the budget nor see another connection spend it.
// With the old fixed budget of 1000 a second, it counted 1000 and 999.
func TestChallengeAckNoSideChannel(t *testing.T) {
	const trials = 100
	p, l, _ := listen(t, 16, tcp.Options{})
	victim := handshake(t, p, 40000)
	attacker := handshake(t, p, 40001)
	for range 2 {
		if _, err := l.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	p.PeerPort = attacker.port
	probe := peerIPv4(p.Encode(seg{Flags: "R", Seq: 100})) // in the attacker's window: a challenge ACK
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[bool][]int{}
	for range trials {
		hit := rng.IntN(2) == 0
		p.InjectIPv4(spoofedRST(p, victim.port, hit))
		for range 1100 { // more than the old budget of 1000
			p.InjectIPv4(probe)
		}
		got := repliesByPort(p)
		counts[hit] = append(counts[hit], got[attacker.port])
		if hit && got[victim.port] != 1 {
			t.Fatalf("the victim sent %d challenge ACKs for a RST in its window, want 1", got[victim.port])
		}
		p.Advance(time.Second) // a new second of budget, and of the per-connection limit
	}
	for hit, cs := range counts {
		for _, c := range cs {
			if c != 1 {
				t.Fatalf("hit=%v: the attacker counted %d challenge ACKs, want 1 in every trial (hits %v, misses %v)",
					hit, c, counts[true], counts[false])
			}
		}
	}
	if len(counts[true]) == 0 || len(counts[false]) == 0 {
		t.Fatal("the trials did not cover both hits and misses")
	}
	st := p.TCP.Stats()
	t.Logf("%d trials: challenge ACKs sent %d, suppressed per connection %d, by the stack-wide budget %d",
		trials, st.Sent(event.SendChallengeAck), st.Dropped(event.DropAckRateLimited), st.Dropped(event.DropChallengeRateLimited))
	p.WantState(l, event.Listen)
}

// TestChallengeAckBudgetRandomized: an attacker with more connections than
// the stack-wide budget can exhaust it, one challenge ACK per connection,
// and count what it got. The budget of each second is drawn from
// [limit/2, limit*3/2) (RFC 5961 10; Linux's fix for CVE-2016-5696), so
// the one challenge ACK the victim's hit costs is lost in the draw: over
// many trials, no threshold on the count tells hits from misses better
// than chance. With a fixed budget, count < budget would tell every time.
func TestChallengeAckBudgetRandomized(t *testing.T) {
	const (
		limit   = 100
		conns   = 2 * limit
		trials  = 300
		maxSkew = 0.75 // best threshold's accuracy; chance is 0.5, a fixed budget gives 1
	)
	if testing.Short() {
		t.Skip("60,000 spoofed RSTs")
	}
	p, l, _ := listen(t, conns+16, tcp.Options{ChallengeAckLimit: limit})
	victim := handshake(t, p, 40000)
	var probes [][]byte
	var ports []uint16
	for i := range conns {
		c := handshake(t, p, uint16(41000+i))
		ports = append(ports, c.port)
		probes = append(probes, peerIPv4(p.Encode(seg{Flags: "R", Seq: 100})))
	}
	for range conns + 1 {
		if _, err := l.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	type trial struct {
		hit   bool
		count int
	}
	var results []trial
	for range trials {
		hit := rng.IntN(2) == 0
		p.InjectIPv4(spoofedRST(p, victim.port, hit))
		for _, b := range probes {
			p.InjectIPv4(b)
		}
		got := repliesByPort(p)
		n := 0
		for _, port := range ports {
			n += got[port]
		}
		if budget := n + got[victim.port]; budget < limit/2 || budget >= limit*3/2 {
			t.Fatalf("%d challenge ACKs in one second, want a budget in [%d, %d)", budget, limit/2, limit*3/2)
		}
		results = append(results, trial{hit, n})
		p.Advance(time.Second)
	}
	// The best classifier "count < threshold means hit" over every
	// threshold.
	best := 0.0
	var thresholds []int
	for _, r := range results {
		thresholds = append(thresholds, r.count, r.count+1)
	}
	slices.Sort(thresholds)
	for _, th := range slices.Compact(thresholds) {
		right := 0
		for _, r := range results {
			if (r.count < th) == r.hit {
				right++
			}
		}
		best = max(best, float64(right)/float64(len(results)))
	}
	t.Logf("%d trials, %d attacker connections, budget [%d, %d): best threshold classifier %.2f right (chance 0.5)",
		trials, conns, limit/2, limit*3/2, best)
	if best > maxSkew {
		t.Fatalf("the attacker's count tells a hit from a miss %.0f%% of the time", best*100)
	}
}
