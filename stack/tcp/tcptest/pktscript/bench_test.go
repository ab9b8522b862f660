package pktscript

import (
	"path/filepath"
	"testing"
)

// BenchmarkHello runs testdata/hello.pkt: a handshake, an exchange and a
// close, on a fresh stack each time.
func BenchmarkHello(b *testing.B) {
	path := filepath.Join("testdata", "hello.pkt")
	b.ReportAllocs()
	for b.Loop() {
		if r := Exec(path, Options{}); r.Status != Pass {
			b.Fatal(r)
		}
	}
}

// BenchmarkUpstream runs the 62 upstream scripts once per iteration:
// minutes of script time each, on the fake clock.
func BenchmarkUpstream(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "..", "..", "shared", "packetdrill", "tcp", "*", "*.pkt"))
	if len(files) != 62 {
		b.Skipf("upstream scripts not found (%d)", len(files))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range files {
			if r := Exec(f, Options{}); r.Status == 0 {
				b.Fatal(f)
			}
		}
	}
}
