package pcaptest_test

import (
	"errors"
	"fmt"

	"github.com/tapstack/tapstack/pcap/pcaptest"
)

// Read a capture written by pcap.New (or tapstack's --pcap flag) with the
// real tshark: each frame's direction, tapstack's comment, and what
// Wireshark's own TCP analysis made of it. It needs tshark; without it
// the error is ErrNoTshark, which a test turns into a skip. Its output
// depends on the capture, so the example is compiled but not run.
func Example() {
	frames, err := pcaptest.Tshark("demo.pcapng")
	if errors.Is(err, pcaptest.ErrNoTshark) {
		fmt.Println("skip:", err)
		return
	}
	if err != nil {
		panic(err)
	}
	for _, f := range frames {
		fmt.Println(f.Number, f.Direction, f.Comment, f.AnalysisNames())
	}
}
