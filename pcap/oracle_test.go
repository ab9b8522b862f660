package pcap_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
)

// The oracle: the scripted scenarios between tapstack (captured,
// 192.0.2.1) and gVisor's TCP (192.0.2.2, an independent implementation)
// over tap.Pipe (pcaptest.Scenarios, which the plot draws too), each
// capture read back by tshark with its TCP analysis.
// tapstack's comments must explain every frame, put every state change on
// the frame that carries it, and agree with Wireshark wherever both speak;
// where they disagree because tapstack knows better, the case is named
// here (namedCases) and the comment says why.

func TestOracle(t *testing.T) {
	if _, err := pcaptest.Version(); err != nil {
		t.Skip("tshark is not installed (apt-get install tshark; .ci/run installs it): the oracle needs Wireshark's TCP analysis")
	}
	for _, sc := range pcaptest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			w, err := sc.Capture(ctx, t, t.TempDir(), pcap.Options{Description: "oracle scenario " + sc.Name})
			if err != nil {
				t.Fatal(err)
			}
			checkCapture(t, w)
			checkMust(t, w, sc.Must)
		})
	}
}

// checkMust fails the scenario if no frame's comment holds one of the
// words it is there to show.
func checkMust(t *testing.T, w *pcaptest.World, must []string) {
	t.Helper()
	pkts, err := pcap.ReadFile(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range must {
		found := false
		for _, p := range pkts {
			if strings.Contains(p.Comment(), w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no frame's comment says %q: the scenario did not show what it is for", w)
		}
	}
}

// A named case: where tapstack and Wireshark disagree because tapstack
// knows better. The comment must contain key, which says why; flag "*"
// matches any Wireshark flag.
type namedCase struct {
	flag, key, why string
}

var namedCases = []namedCase{
	{"*", "fault: dropped", "the fault middleware dropped the frame on its way in: the stack never saw it"},
	{"duplicate_ack", "SND.UNA +", "the identical ACK before it was dropped by the fault middleware: for the stack this one is new (checked)"},
	{"duplicate_ack", "accept queue add", "the identical final ACK before it found the accept queue full and was dropped: for the listener this one completes the handshake (checked)"},
	{"keep_alive", "zero window probe", "a Linux-style zero window probe (SEQ = SND.UNA-1, no data): Wireshark reads the shape as a keep-alive"},
	{"retransmission", "zero window probe", "a probe repeats SND.UNA-1: Wireshark calls a repeated probe a retransmission"},
	{"duplicate_ack", "ACK: nothing new", "the engine's RFC 5681 2 test did not count it (nothing outstanding, the window moved, or no new SACK information); Wireshark counts any repeated ACK"},
	{"duplicate_ack", "dropped:", "the engine discarded the segment before its ACK was processed"},
	{"retransmission", "fault: duplicated", "the fault middleware sent the frame twice: not a retransmission"},
	{"out_of_order", "fault: reordered", "the fault middleware reordered the frame"},
	{"lost_segment", "fault:", "a frame before it met a fault"},
}

// rules say, per Wireshark analysis flag, which words of a tapstack
// comment agree with it.
var rules = map[string][]string{
	"retransmission":          {"retransmit", "retransmission of frame", "dropped: old sequence", "tail loss probe"}, // a probe resends the last segment (RFC 8985 7.3)
	"fast_retransmission":     {"retransmit"},
	"spurious_retransmission": {"retransmit", "retransmission of frame", "dropped: old sequence", "tail loss probe"}, // a probe sent as the ACK covering it arrived: spurious on the wire, a probe to the engine
	"duplicate_ack":           {"dup ACK #"},
	"zero_window":             {"zero window"},
	"zero_window_probe":       {"zero window probe"},
	"window_update":           {"window update"},
	"keep_alive":              {"keepalive"},
	"out_of_order":            {"fills a hole", "out of order", "retransmission of frame", "retransmit", "dropped: old sequence"},
	"lost_segment":            {"out of order: held", "link drops", "dropped:"},
}

// reverse rules: words of a tapstack comment that Wireshark must confirm
// with one of its flags.
var reverse = []struct {
	dir   pcap.Direction
	word  string
	flags []string
}{
	{pcap.Outbound, "retransmit", []string{"retransmission", "fast_retransmission", "spurious_retransmission"}},
	{pcap.Unknown, "zero window;", []string{"zero_window"}},
	{pcap.Outbound, "dup ACK #", []string{"duplicate_ack"}},
	{pcap.Inbound, "keepalive", []string{"keep_alive"}},
	{pcap.Inbound, "retransmission of frame", []string{"retransmission", "spurious_retransmission", "out_of_order", "fast_retransmission"}},
}

var (
	stateRE = regexp.MustCompile(`([A-Z][A-Z0-9-]+) → ([A-Z][A-Z0-9-]+)`)
	retxRE  = regexp.MustCompile(`retransmit (?:#\d+ )?of frame (\d+)`)
)

// checkCapture applies the oracle to r's capture.
func checkCapture(t *testing.T, w *pcaptest.World) {
	t.Helper()
	pkts, err := pcap.ReadFile(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := pcap.ReadNotes(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	frames, err := pcaptest.Tshark(w.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Capture.Stats(); st.Unexplained > 0 {
		t.Errorf("%d frames without an engine event; stats %+v", st.Unexplained, st)
	}
	byNo := map[int]pcaptest.Frame{}
	for _, fr := range frames {
		byNo[fr.Number] = fr
	}
	if len(frames) != len(pkts)+len(notes) {
		t.Errorf("tshark read %d records, the capture has %d frames and %d notes", len(frames), len(pkts), len(notes))
	}
	named := map[string]int{}
	droppedAcks := map[uint32]bool{}  // ACK numbers of inbound frames a fault dropped
	overflowAcks := map[uint32]bool{} // ACK numbers of final ACKs the accept queue's overflow dropped
	var dump strings.Builder
	for _, p := range pkts {
		fr := byNo[p.Number]
		c := p.Comment()
		if p.Direction == pcap.Inbound && strings.Contains(c, "fault: dropped") {
			droppedAcks[ackOf(p)] = true
		}
		if p.Direction == pcap.Inbound && strings.Contains(c, "final ACK dropped") {
			overflowAcks[ackOf(p)] = true
		}
		fmt.Fprintf(&dump, "%4d %-3v %-10s %-40s | %s\n", p.Number, p.Direction, fr.Flags, strings.Join(fr.AnalysisNames(), ","), c)
		// Every frame explained, and tshark reads what we wrote.
		if c == "" || strings.Contains(c, "no engine event") {
			t.Errorf("frame %d (%v %s) has no explanation: %q", p.Number, p.Direction, fr.Flags, c)
		}
		if fr.Comment != c {
			t.Errorf("frame %d: tshark reads comment %q, we wrote %q", p.Number, fr.Comment, c)
		}
		// A drop verdict exactly where a drop is told.
		dropped := strings.Contains(c, "dropped")
		if dropped != (fr.Verdict == "2") || dropped != p.Dropped {
			t.Errorf("frame %d: comment %q, verdict %q (read back %v)", p.Number, c, fr.Verdict, p.Dropped)
		}
		checkStates(t, p, c)
		// Wireshark's flags, confirmed by tapstack's words or named.
		for _, flag := range fr.AnalysisNames() {
			words, ok := rules[flag]
			if !ok || containsAny(c, words) {
				continue
			}
			if nc := findNamed(flag, c); nc != nil {
				if nc.key == "SND.UNA +" && !droppedAcks[ackOf(p)] {
					t.Errorf("frame %d: Wireshark says duplicate ACK, tapstack %q, and no identical ACK before it was dropped", p.Number, c)
				}
				if nc.key == "accept queue add" && !overflowAcks[ackOf(p)] {
					t.Errorf("frame %d: Wireshark says duplicate ACK, tapstack %q, and no identical final ACK before it met a full accept queue", p.Number, c)
				}
				named[nc.flag+": "+nc.key]++
				continue
			}
			t.Errorf("frame %d %v %s: Wireshark says %s, tapstack says %q", p.Number, p.Direction, fr.Flags, flag, c)
		}
		for _, rv := range reverse {
			if (rv.dir != pcap.Unknown && rv.dir != p.Direction) || !strings.Contains(c+";", rv.word) {
				continue
			}
			ok := false
			for _, fl := range rv.flags {
				ok = ok || fr.Has(fl)
			}
			if !ok && rv.word == "retransmit" && fr.Has("out_of_order") {
				// Wireshark calls a retransmission sent less than an RTT
				// after the highest segment out-of-order; the engine
				// knows it retransmitted.
				named["out_of_order: retransmit"]++
				continue
			}
			if !ok && !strings.Contains(c, "zero window probe") {
				t.Errorf("frame %d %v %s: tapstack says %q, Wireshark has none of %v (it says %v)", p.Number, p.Direction, fr.Flags, rv.word, rv.flags, fr.AnalysisNames())
			}
		}
		// A retransmission shares its original's packet id.
		if m := retxRE.FindStringSubmatch(c); m != nil {
			var orig int
			fmt.Sscan(m[1], &orig)
			if o := byNo[orig]; o.PacketID != fr.PacketID || fr.PacketID == 0 {
				t.Errorf("frame %d: packet id %d, its original frame %d has %d", p.Number, fr.PacketID, orig, o.PacketID)
			}
		}
	}
	// Every state change of a connection is told, on a frame or in a
	// note.
	var all strings.Builder
	for _, p := range pkts {
		all.WriteString(p.Comment() + "\n")
	}
	for _, n := range notes {
		all.WriteString(n.Text + "\n")
	}
	text := all.String()
	counts := map[string]int{}
	for _, ev := range w.States() {
		counts[ev.From.String()+" → "+ev.To.String()]++
	}
	for s, n := range counts {
		if got := strings.Count(text, s); got < n {
			t.Errorf("state change %s happened %d times, told %d times", s, n, got)
		}
	}
	var ns []string
	for k, v := range named {
		ns = append(ns, fmt.Sprintf("%s (%d)", k, v))
	}
	sort.Strings(ns)
	t.Logf("%d frames, %d notes; named disagreements: %v", len(pkts), len(notes), ns)
	if t.Failed() || testing.Verbose() {
		t.Logf("capture (number, direction, flags, Wireshark's analysis | tapstack's comment):\n%s", dump.String())
		for _, n := range notes {
			t.Logf("note %s %s: %s", n.Time.Format(time.TimeOnly), n.Conn, n.Text)
		}
	}
}

func ackOf(p pcap.Packet) uint32 {
	_, k, _ := p.TCP()
	return k.Ack
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func findNamed(flag, c string) *namedCase {
	for i := range namedCases {
		if (namedCases[i].flag == flag || namedCases[i].flag == "*") && strings.Contains(c, namedCases[i].key) {
			return &namedCases[i]
		}
	}
	return nil
}

// checkStates: a state change is on the frame that carries it. The table
// says which segment can cause (inbound) or carry (outbound) a change into
// each state, by direction and flags. Changes told as "earlier ..." are
// the ones no frame carried.
func checkStates(t *testing.T, p pcap.Packet, c string) {
	t.Helper()
	_, k, ok := p.TCP()
	for _, part := range strings.Split(c, "; ") {
		if strings.HasPrefix(part, "earlier ") {
			continue
		}
		for _, m := range stateRE.FindAllStringSubmatch(part, -1) {
			if !ok {
				if !strings.HasPrefix(c, "ICMP") {
					t.Errorf("frame %d: %s on a frame without TCP", p.Number, m[0])
				}
				continue
			}
			flags := k.Flags
			syn, fin, rst, ack := flags&0x02 != 0, flags&0x01 != 0, flags&0x04 != 0, flags&0x10 != 0
			in := p.Direction == pcap.Inbound
			var good bool
			switch m[2] {
			case "SYN-SENT":
				good = !in && syn && !ack
			case "SYN-RECEIVED":
				good = in && syn
			case "ESTABLISHED":
				good = in && ack
			case "FIN-WAIT-1", "LAST-ACK":
				good = !in && fin
			case "FIN-WAIT-2":
				good = in && ack
			case "CLOSE-WAIT", "CLOSING":
				good = in && fin
			case "TIME-WAIT":
				good = in && (fin || ack)
			case "CLOSED":
				good = rst || (in && ack) || (in && syn)
			default:
				good = true
			}
			if !good {
				t.Errorf("frame %d (%v, flags %#x): %s is not carried by this segment: %q", p.Number, p.Direction, flags, m[0], c)
			}
		}
	}
}
