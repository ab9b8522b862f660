package plot_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
	"github.com/tapstack/tapstack/plot"
)

var update = flag.Bool("update", false, "rewrite testdata/*.pcapng and *.golden from fresh runs of the scenarios")

// Golden pages: the scenarios' captures are kept in testdata (frames cut
// to 128 bytes, as tcpdump -s 128 would), and the page drawn from each is
// summarized (every marked segment, every state change of both ends, the
// series' sizes, the listeners' decisions) and compared with its
// .golden file. go test -run TestGolden -update captures the scenarios
// again and rewrites both.
func TestGolden(t *testing.T) {
	for _, sc := range pcaptest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			capPath := filepath.Join("testdata", sc.Name+".pcapng")
			goldPath := filepath.Join("testdata", sc.Name+".golden")
			if *update {
				fresh := captureScenario(t, sc, t.TempDir(), 128)
				b, err := os.ReadFile(fresh)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(capPath, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d, err := plot.ReadFile(capPath)
			if err != nil {
				t.Fatal(err)
			}
			// The page's embedded data is the data read.
			var page bytes.Buffer
			if err := plot.WriteHTML(&page, d); err != nil {
				t.Fatal(err)
			}
			back, err := plot.Extract(page.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstCapture(t, capPath, back)
			got := summarize(back)
			if *update {
				if err := os.WriteFile(goldPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldPath)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("the page of %s differs from %s (go test -run TestGolden -update rewrites it):\n%s", capPath, goldPath, diff(string(want), got))
			}
		})
	}
}

// TestScenarioPages draws fresh captures of the scenarios, as tapstack
// writes them now, and checks each page against its capture.
func TestScenarioPages(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the five scenarios (about 5 s)")
	}
	for _, sc := range pcaptest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			path := captureScenario(t, sc, t.TempDir(), 0)
			page := filepath.Join(t.TempDir(), sc.Name+".html")
			if _, err := plot.File(path, page); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			d, err := plot.Extract(b)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstCapture(t, path, d)
			checkScenario(t, sc.Name, d)
		})
	}
}

// checkAgainstCapture: the page's data holds every TCP frame of the
// capture under its Wireshark number, every dropped frame as a drop with
// its reason, every retransmission the engine reported with its cause,
// every drop the engine reported with its reason, the capturing end's
// state changes in the order the engine made them, every cwnd the
// engine's events carried, and every listener decision.
func checkAgainstCapture(t *testing.T, path string, d *plot.Data) {
	t.Helper()
	pkts, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := pcap.ReadEvents(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !d.Annotated || d.Events != len(evs) {
		t.Errorf("page: annotated %v with %d events; the capture has %d", d.Annotated, d.Events, len(evs))
	}
	segs := map[int]plot.Seg{}
	for _, c := range d.Conns {
		for _, s := range c.Segs {
			if _, dup := segs[s.No]; dup {
				t.Errorf("frame %d twice on the page", s.No)
			}
			segs[s.No] = s
		}
	}
	ntcp := 0
	for _, p := range pkts {
		if !isTCP(p.Data) {
			continue
		}
		ntcp++
		s, ok := segs[p.Number]
		if !ok {
			t.Errorf("frame %d (%s) is not on the page", p.Number, p.Comment())
			continue
		}
		if s.Comment != p.Comment() {
			t.Errorf("frame %d: comment %q on the page, %q in the capture", p.Number, s.Comment, p.Comment())
		}
		if p.Dropped && (!s.Drop || s.DropWhy == "") {
			t.Errorf("frame %d was dropped (%s): the page has drop %v, reason %q", p.Number, p.Comment(), s.Drop, s.DropWhy)
		}
		if !p.Dropped && s.Drop {
			t.Errorf("frame %d was not dropped; the page marks it", p.Number)
		}
	}
	if ntcp != len(segs) {
		t.Errorf("%d TCP frames in the capture, %d on the page", ntcp, len(segs))
	}
	type key struct{ conn, what string }
	want, got := map[key]int{}, map[key]int{}
	states := map[string][]string{}
	cwnd := map[string]int{}
	decisions := map[string]int{}
	for _, e := range evs {
		c := e.Local + "-" + e.Remote
		switch {
		case e.Kind == "queue":
			decisions[e.Local[strings.LastIndex(e.Local, ":"):]]++
		case e.Remote == "":
		case e.Kind == "send" && (strings.Contains(e.Send, "retransmit") || e.Send == "tail loss probe" && e.Attempt > 0):
			want[key{c, "retx " + e.Send}]++
		case e.Kind == "drop":
			want[key{c, "drop " + e.Drop}]++
		case e.Kind == "state":
			states[c] = append(states[c], e.From+" → "+e.To)
		}
		if e.Remote != "" && (e.Kind == "ack" || e.Kind == "recovery" || e.Kind == "rto") && e.Cwnd > 0 {
			cwnd[c]++
		}
	}
	for _, c := range d.Conns {
		id := c.Ends[0].Addr + "-" + c.Ends[1].Addr
		for _, s := range c.Segs {
			switch {
			case s.Mark == "retx" && s.Dir == 0 && !strings.HasPrefix(s.Why, "wire"):
				got[key{id, "retx " + s.Why}]++
			case s.Mark == "drop":
				got[key{id, "drop " + s.Why}]++
			}
		}
		var st []string
		for _, x := range c.States[0] {
			st = append(st, x.From+" → "+x.To)
		}
		// Several instances of one 4-tuple split the engine's list.
		if w := strings.Join(states[id], ", "); !strings.Contains(w, strings.Join(st, ", ")) || len(st) == 0 {
			t.Errorf("%s: states on the page %v, the engine's %v", c.Name, st, states[id])
		}
		if len(c.Series.Cwnd) != cwnd[id] {
			t.Errorf("%s: %d cwnd points on the page, %d in the events", c.Name, len(c.Series.Cwnd), cwnd[id])
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d × %q in the engine's events, %d on the page", k.conn, n, k.what, got[k])
		}
	}
	for k, n := range got {
		if want[k] != n {
			t.Errorf("%s: %d × %q on the page, %d in the engine's events", k.conn, n, k.what, want[k])
		}
	}
	for _, l := range d.Listeners {
		port := l.Addr[strings.LastIndex(l.Addr, ":"):]
		if len(l.Decisions) != decisions[port] || len(l.Points) != decisions[port] {
			t.Errorf("listener %s: %d decisions on the page, %d in the events", l.Addr, len(l.Decisions), decisions[port])
		}
	}
}

// checkScenario: what each scenario must show.
func checkScenario(t *testing.T, name string, d *plot.Data) {
	t.Helper()
	count := func(c *plot.Conn, f func(plot.Seg) bool) int {
		n := 0
		for _, s := range c.Segs {
			if f(s) {
				n++
			}
		}
		return n
	}
	seq := func(sts []plot.St) string {
		var b []string
		for _, s := range sts {
			b = append(b, s.To)
		}
		return strings.Join(b, " ")
	}
	switch name {
	case "close-tapstack-first", "close-peer-first":
		// [tapstack's states, the peer's from the wire]: the end that
		// opens also sends and closes first.
		want := map[string][2]string{
			"close-tapstack-first": {"SYN-SENT ESTABLISHED FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT CLOSED", "SYN-RECEIVED ESTABLISHED CLOSE-WAIT LAST-ACK CLOSED"},
			"close-peer-first":     {"SYN-RECEIVED ESTABLISHED CLOSE-WAIT LAST-ACK CLOSED", "SYN-SENT ESTABLISHED FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT"},
		}[name]
		c := d.Conns[0]
		for i, who := range []string{"tapstack's states", "the peer's states from the wire"} {
			if got := seq(c.States[i]); got != want[i] {
				t.Errorf("%s: %s, want %s", who, got, want[i])
			}
		}
		if name == "close-peer-first" {
			if c.Flows[1].Bytes < 64<<10 {
				t.Errorf("the peer's flow %+v, want 64 KiB and more", c.Flows[1])
			}
			break
		}
		if c.Flows[0].Bytes < 64<<10 || len(c.Series.Cwnd) == 0 || len(c.Series.RTT[0]) == 0 {
			t.Errorf("flow %+v, %d cwnd points, %d RTT samples", c.Flows[0], len(c.Series.Cwnd), len(c.Series.RTT[0]))
		}
		// The sender's SRTT and pipe are the engine's own, from its
		// ACK events, not estimates off the wire.
		if !c.Series.RTTEngine || !c.Series.InFlightEngine {
			t.Errorf("RTT from the engine %v, in flight from the engine %v", c.Series.RTTEngine, c.Series.InFlightEngine)
		}
	case "loss-sack":
		c := d.Conns[0]
		retx := count(c, func(s plot.Seg) bool { return s.Mark == "retx" && s.Dir == 0 })
		drops := count(c, func(s plot.Seg) bool { return s.Drop })
		sacks := count(c, func(s plot.Seg) bool { return len(s.SACK) > 0 })
		if retx == 0 || drops == 0 || sacks == 0 || len(c.Series.Recovery) == 0 {
			t.Errorf("%d retransmissions, %d drops, %d SACKs, %d recovery marks", retx, drops, sacks, len(c.Series.Recovery))
		}
	case "zero-window":
		c := d.Conns[0]
		probes := count(c, func(s plot.Seg) bool { return s.Mark == "probe" })
		zero := count(c, func(s plot.Seg) bool { return s.Win == 0 && !strings.Contains(s.Flag, "R") })
		if probes == 0 || zero == 0 {
			t.Errorf("%d probes, %d zero windows", probes, zero)
		}
	case "accept-queue-full":
		if len(d.Conns) != 3 || len(d.Listeners) != 1 {
			t.Fatalf("%d connections and %d listeners, want 3 and 1", len(d.Conns), len(d.Listeners))
		}
		full := 0
		for _, m := range d.Listeners[0].Decisions {
			if strings.Contains(m.Text, "overflow") || strings.Contains(m.Text, "dropped") {
				full++
			}
		}
		if full == 0 {
			t.Errorf("no overflow among the listener's decisions: %+v", d.Listeners[0].Decisions)
		}
	}
}

// summarize renders what a page shows in a stable text form.
func summarize(d *plot.Data) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frames %d (not TCP %d), annotated %v, events %d\n", d.Frames, d.Others, d.Annotated, d.Events)
	for _, c := range d.Conns {
		fmt.Fprintf(&b, "\nconnection %s\n", c.Name)
		for i, e := range c.Ends {
			f := c.Flows[i]
			fmt.Fprintf(&b, "  end %s (%s, states from %s): sent %d bytes in %d segments, %d retransmitted, %d dropped, window scale %d\n",
				e.Addr, e.Role, e.States, f.Bytes, f.Segments, f.Retransmit, f.Drops, f.Scale)
		}
		for _, s := range c.Segs {
			if s.Mark == "" && !s.Drop {
				continue
			}
			fmt.Fprintf(&b, "  frame %d dir %d [%s] seq %d len %d: %s %s", s.No, s.Dir, s.Flag, s.Seq, s.Len, s.Mark, s.Why)
			if s.Drop {
				fmt.Fprintf(&b, " | dropped: %s", s.DropWhy)
			}
			b.WriteString("\n")
		}
		for i := range 2 {
			for _, st := range c.States[i] {
				fmt.Fprintf(&b, "  state %s: %s → %s (%s) frame %d\n", c.Ends[i].Addr, st.From, st.To, st.Cause, st.No)
			}
		}
		fmt.Fprintf(&b, "  series: cwnd %d, in flight %d/%d, rtt %d/%d, recovery %d, rto fired %d\n",
			len(c.Series.Cwnd), len(c.Series.InFlight[0]), len(c.Series.InFlight[1]), len(c.Series.RTT[0]), len(c.Series.RTT[1]),
			len(c.Series.Recovery), len(c.Series.RTOFired))
		for _, m := range c.Series.Recovery {
			fmt.Fprintf(&b, "  recovery: %s\n", m.Text)
		}
		fmt.Fprintf(&b, "  ladder %v\n", c.Ladder)
		for _, n := range c.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n.Text)
		}
	}
	for _, l := range d.Listeners {
		fmt.Fprintf(&b, "\nlistener %s\n", l.Addr)
		for _, m := range l.Decisions {
			fmt.Fprintf(&b, "  %s\n", m.Text)
		}
		for _, st := range l.States {
			fmt.Fprintf(&b, "  state %s → %s (%s)\n", st.From, st.To, st.Cause)
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "note %s: %s\n", n.Conn, n.Text)
	}
	return b.String()
}

// diff shows the first lines that differ.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < 20; i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, a, c)
			n++
		}
	}
	return b.String()
}

// A capture without tapstack's annotations, as tcpdump writes it (classic
// pcap, no comments, no directions, no events), still draws the
// time-sequence graph: every segment, retransmissions read off the wire,
// both ends' states inferred from the segments.
func TestWithoutAnnotations(t *testing.T) {
	src := filepath.Join("testdata", "loss-sack.pcapng")
	path := filepath.Join(t.TempDir(), "tcpdump.pcap")
	n := writeLikeTcpdump(t, src, path)
	d, err := plot.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Annotated || d.Commented || len(d.Conns) != 1 {
		t.Fatalf("annotated %v, commented %v, %d connections", d.Annotated, d.Commented, len(d.Conns))
	}
	c := d.Conns[0]
	if len(c.Segs) != n {
		t.Errorf("%d segments on the page, %d in the capture", len(c.Segs), n)
	}
	retx := 0
	for _, s := range c.Segs {
		if s.Mark == "retx" && strings.HasPrefix(s.Why, "wire") {
			retx++
		}
	}
	if retx == 0 {
		t.Error("no retransmission read off the wire of a lossy transfer")
	}
	for i, e := range c.Ends {
		if e.States != "wire" || len(c.States[i]) < 3 {
			t.Errorf("end %s: states from %s: %+v", e.Addr, e.States, c.States[i])
		}
	}
	if c.Ends[0].Role != "client" || !strings.HasSuffix(c.Ends[1].Addr, ":80") {
		t.Errorf("ends %+v: the SYN's sender is the client", c.Ends)
	}
	if len(c.Series.Cwnd) != 0 || len(c.Series.InFlight[0]) == 0 || len(c.Series.RTT[0]) == 0 {
		t.Errorf("series without events: %d cwnd, %d in flight, %d RTT", len(c.Series.Cwnd), len(c.Series.InFlight[0]), len(c.Series.RTT[0]))
	}
}

// writeLikeTcpdump copies every frame of a pcapng capture into a classic
// pcap file without any annotation (no comments, directions, verdicts or
// events); it returns the number of TCP frames written.
func writeLikeTcpdump(t *testing.T, src, dst string) int {
	t.Helper()
	pkts, err := pcap.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	frames := make([]rawFrame, len(pkts))
	n := 0
	for i, p := range pkts {
		frames[i] = rawFrame{t: p.Time, data: p.Data, length: p.Length}
		if isTCP(p.Data) {
			n++
		}
	}
	writePcap(t, dst, frames)
	return n
}

// rawFrame is a frame as tcpdump keeps it: its time, the bytes captured
// and its length on the wire.
type rawFrame struct {
	t      time.Time
	data   []byte
	length int
}

// writePcap writes frames to path as tcpdump -w does: classic pcap,
// Ethernet, nanosecond times, nothing but the frames.
func writePcap(t *testing.T, path string, frames []rawFrame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.t, CaptureLength: len(fr.data), Length: fr.length}
		if err := w.WritePacket(ci, fr.data); err != nil {
			t.Fatal(err)
		}
	}
}

// isTCP reports whether an Ethernet frame carries TCP, from its headers
// alone: the golden captures are cut to 128 bytes, which pcap.Packet.TCP
// does not read.
func isTCP(b []byte) bool {
	if len(b) < 14+40 {
		return false
	}
	switch uint16(b[12])<<8 | uint16(b[13]) {
	case 0x0800:
		return b[14+9] == 6 && (uint16(b[14+6]&0x3f)<<8|uint16(b[14+7])) == 0 // not a fragment
	case 0x86dd:
		return b[14+6] == 6
	}
	return false
}
