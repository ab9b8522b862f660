// Package pcaptest reads captures back with the real tshark, for tests
// that check what Wireshark users will see, and compares tapstack's
// comments with Wireshark's own TCP analysis. It also holds the scripted
// scenarios whose captures those tests read (Scenarios, scenario.go):
// pcap's oracle checks them against Wireshark and the plot draws them.
package pcaptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/tapstack/tapstack/pcap"
)

// ErrNoTshark is returned when tshark is not installed.
var ErrNoTshark = errors.New("pcaptest: tshark not found in PATH")

// CommentField is the display filter field of packet comments in the
// tshark versions we support (3.6 and later; older ones call it
// pkt_comment).
const CommentField = "frame.comment"

// Analysis lists the tcp.analysis fields the oracle reads: Wireshark's
// own guesses about each TCP segment (epan/dissectors/packet-tcp.c).
var Analysis = []string{
	"tcp.analysis.retransmission",
	"tcp.analysis.fast_retransmission",
	"tcp.analysis.spurious_retransmission",
	"tcp.analysis.duplicate_ack",
	"tcp.analysis.zero_window",
	"tcp.analysis.zero_window_probe",
	"tcp.analysis.zero_window_probe_ack",
	"tcp.analysis.window_update",
	"tcp.analysis.window_full",
	"tcp.analysis.keep_alive",
	"tcp.analysis.keep_alive_ack",
	"tcp.analysis.out_of_order",
	"tcp.analysis.lost_segment",
	"tcp.analysis.ack_lost_segment",
}

// Frame is one frame (or pcapng record) as tshark decodes it.
type Frame struct {
	Number    int
	Direction pcap.Direction
	Protocols string // frame.protocols, e.g. "eth:ethertype:ip:tcp"
	Comment   string // the comments, joined by tshark with ","
	Note      bool   // a pcapng custom block (tapstack's note), not a frame
	Verdict   string // frame.verdict.ebpf_tc, "2" for TC_ACT_SHOT
	PacketID  uint64
	DropCount uint64
	Flags     string          // tcp.flags.str
	Analysis  map[string]bool // which of Analysis tshark set, by name without "tcp.analysis."
}

// Has reports whether tshark set tcp.analysis.<name> on the frame.
func (f Frame) Has(name string) bool { return f.Analysis[name] }

// AnalysisNames lists what tshark said about the frame, sorted as
// Analysis is.
func (f Frame) AnalysisNames() []string {
	var out []string
	for _, a := range Analysis {
		n := strings.TrimPrefix(a, "tcp.analysis.")
		if f.Analysis[n] {
			out = append(out, n)
		}
	}
	return out
}

// Tshark runs tshark -r path and returns its view of every record.
func Tshark(path string) ([]Frame, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return nil, ErrNoTshark
	}
	fields := []string{"frame.number", "frame.packet_flags_direction", "frame.protocols", CommentField,
		"frame.cb_pen", "frame.verdict.ebpf_tc", "frame.packet_id", "frame.drop_count", "tcp.flags.str"}
	fields = append(fields, Analysis...)
	args := []string{"-r", path, "-T", "json", "-o", "tcp.relative_sequence_numbers:TRUE", "-o", "tcp.analyze_sequence_numbers:TRUE"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %v\n%s", cmd, err, stderr.String())
	}
	var recs []struct {
		Source struct {
			Layers map[string][]string `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("tshark json: %v", err)
	}
	frames := make([]Frame, 0, len(recs))
	for _, r := range recs {
		l := r.Source.Layers
		one := func(k string) string {
			if v := l[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		fr := Frame{Protocols: one("frame.protocols"), Comment: strings.Join(l[CommentField], ","),
			Verdict: one("frame.verdict.ebpf_tc"), Flags: one("tcp.flags.str"), Analysis: map[string]bool{}}
		fr.Number, _ = strconv.Atoi(one("frame.number"))
		fr.Note = one("frame.cb_pen") != ""
		fr.PacketID, _ = strconv.ParseUint(one("frame.packet_id"), 0, 64)
		fr.DropCount, _ = strconv.ParseUint(one("frame.drop_count"), 0, 64)
		if d, err := strconv.ParseUint(strings.TrimPrefix(one("frame.packet_flags_direction"), "0x"), 16, 32); err == nil {
			switch d & 3 {
			case 1:
				fr.Direction = pcap.Inbound
			case 2:
				fr.Direction = pcap.Outbound
			}
		}
		for _, a := range Analysis {
			if _, ok := l[a]; ok {
				fr.Analysis[strings.TrimPrefix(a, "tcp.analysis.")] = true
			}
		}
		frames = append(frames, fr)
	}
	return frames, nil
}

// Comments runs tshark -r path -T fields -e frame.comment, the command a
// user would type, and returns its output.
func Comments(path string) (string, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return "", ErrNoTshark
	}
	cmd := exec.Command(bin, "-r", path, "-T", "fields", "-e", "frame.number", "-e", "frame.packet_flags_direction", "-e", CommentField)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v: %v\n%s", cmd, err, stderr.String())
	}
	return string(out), nil
}

// Version returns tshark's first version line.
func Version() (string, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return "", ErrNoTshark
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line, nil
}
