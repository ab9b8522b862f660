package tcptest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// exampleT is what an Example can offer of testing.TB: tcptest's fixtures
// call only these methods. A failure is printed, and a fatal one stops
// the example; cleanups run when it ends. In a test, pass the test's t.
type exampleT struct {
	testing.TB // nil: never called
	cleanups   []func()
}

func (*exampleT) Helper()                        {}
func (*exampleT) Errorf(format string, a ...any) { fmt.Printf("error: "+format+"\n", a...) }
func (*exampleT) Fatal(a ...any)                 { panic(fmt.Sprint(a...)) }
func (*exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }

func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// A request, its reply, and a reply lost once, as a packet trace on the
// fake clock. The fixture opens the connection (Listen, SYN, SYN-ACK, ACK,
// Accept); the peer's first data is acknowledged at once (Linux's
// quick-ACK mode at the start of a connection); the reply is lost, and the
// retransmission timer (RFC 6298: 200 ms, Linux's minimum) sends it again
// when the clock reaches it, not a microsecond before. Expect fails the
// test with the whole trace when a segment differs; Trace prints it.
func Example() {
	t := &exampleT{}
	defer t.done()
	p, ep := tcptest.Established(t)

	p.Inject(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 1, Payload: []byte("GET /")})
	p.Expect(tcptest.Seg{Flags: ".", Seq: 1, Ack: 6})
	buf := make([]byte, 16)
	n, _ := ep.Read(buf)
	fmt.Printf("the user read %q\n", buf[:n])

	ep.Write([]byte("200 OK"))
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 6, Payload: []byte("200 OK")})
	rto := ep.Info().RTO
	p.Advance(rto - time.Microsecond)
	p.ExpectNothing()
	p.Advance(time.Microsecond)
	p.Expect(tcptest.Seg{Flags: "P.", Seq: 1, Ack: 6, Payload: []byte("200 OK")})
	p.Inject(tcptest.Seg{Flags: ".", Seq: 6, Ack: 7})
	p.ExpectNothing()
	fmt.Println(p.Trace())

	// Output:
	// the user read "GET /"
	//   0.000000 > IP 192.0.2.2.40000 > 192.0.2.1.80: Flags [S], seq 0, win 65535, options [mss 1460], length 0
	//   0.000000 < IP 192.0.2.1.80 > 192.0.2.2.40000: Flags [S.], seq 0, ack 1, win 65535, options [mss 1460], length 0
	//   0.000000 > IP 192.0.2.2.40000 > 192.0.2.1.80: Flags [.], seq 1, ack 1, win 65535, length 0
	//   0.000000 > IP 192.0.2.2.40000 > 192.0.2.1.80: Flags [P.], seq 1:6, ack 1, win 65535, length 5
	//   0.000000 < IP 192.0.2.1.80 > 192.0.2.2.40000: Flags [.], seq 1, ack 6, win 65535, length 0
	//   0.000000 < IP 192.0.2.1.80 > 192.0.2.2.40000: Flags [P.], seq 1:7, ack 6, win 65535, length 6
	//   0.200000 --- clock advanced 200ms
	//   0.200001 --- clock advanced 1µs
	//   0.200001 < IP 192.0.2.1.80 > 192.0.2.2.40000: Flags [P.], seq 1:7, ack 6, win 65535, length 6
	//   0.200001 > IP 192.0.2.2.40000 > 192.0.2.1.80: Flags [.], seq 6, ack 7, win 65535, length 0
}
