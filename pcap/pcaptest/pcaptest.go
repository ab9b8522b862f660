// Package pcaptest reads captures back with the real tshark, for tests
// that check what Wireshark users will see.
package pcaptest

import (
	"bytes"
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

// Frame is one frame as tshark decodes it.
type Frame struct {
	Number    int
	Direction pcap.Direction
	Protocols string // frame.protocols, e.g. "eth:ethertype:ip:tcp"
	Comment   string // the comments, joined by tshark with ","
}

// Tshark runs tshark -r path -T fields and returns its view of every frame.
func Tshark(path string) ([]Frame, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return nil, ErrNoTshark
	}
	cmd := exec.Command(bin, "-r", path, "-T", "fields",
		"-e", "frame.number", "-e", "frame.packet_flags_direction", "-e", "frame.protocols", "-e", CommentField,
		"-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %v\n%s", cmd, err, stderr.String())
	}
	var frames []Frame
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 4)
		for len(f) < 4 {
			f = append(f, "")
		}
		var fr Frame
		fr.Number, _ = strconv.Atoi(f[0])
		if d, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 32); err == nil {
			switch d & 3 {
			case 1:
				fr.Direction = pcap.Inbound
			case 2:
				fr.Direction = pcap.Outbound
			}
		}
		fr.Protocols = f[2]
		fr.Comment = f[3]
		frames = append(frames, fr)
	}
	return frames, nil
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
