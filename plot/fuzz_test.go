package plot_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/tapstack/tapstack/plot"
)

// FuzzRead: no capture, however broken, makes the plot panic, hang or
// write a page its own Extract cannot read back, the page of the frames
// before a cut included. Seeds: the golden
// captures, whole and cut short, and a classic pcap.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"close-tapstack-first", "accept-queue-full"} {
		b, err := os.ReadFile("testdata/" + name + ".pcapng")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:200])
	}
	f.Add([]byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := plot.Read(bytes.NewReader(b), "fuzz")
		if d == nil {
			return
		}
		if err != nil && !errors.Is(err, plot.ErrCutShort) {
			t.Fatalf("data with an error other than ErrCutShort: %v", err)
		}
		var page bytes.Buffer
		if err := plot.WriteHTML(&page, d); err != nil {
			t.Fatal(err)
		}
		back, err := plot.Extract(page.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if len(back.Conns) != len(d.Conns) {
			t.Fatalf("%d connections written, %d read back", len(d.Conns), len(back.Conns))
		}
	})
}
