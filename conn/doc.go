// Package conn adapts tapstack's TCP engine to Go's net interfaces: Conn
// is a net.Conn, Listener a net.Listener, so net/http, crypto/tls and any
// Go code run on a tapstack stack.
//
//   - [Dial], [DialContext] and [Dialer] open a connection (RFC 9293
//     3.10.1, active OPEN); [Listen] and [ListenConfig] a listener
//     (passive OPEN) whose accept queue holds backlog+1 connections, as
//     Linux's does.
//   - [Conn.Read], [Conn.Write], [Conn.CloseWrite] and [Conn.Close] are
//     RECEIVE, SEND and CLOSE; SetLinger(0) makes Close an ABORT (RST).
//   - [Conn.State] and [Conn.Info] are STATUS: the RFC state and a
//     TCP_INFO-like snapshot.
//   - [ListenPacket], [ListenUDP] and [DialUDP] give a [UDPConn] on
//     gVisor's UDP; ListenPacket with "ip4:icmp" an [ICMPConn] (echo), and
//     [Ping] a round-trip time; [Resolver] is Go's resolver dialing through
//     the stack.
//
// Errors follow package net: a *net.OpError whose Err wraps the syscall
// errno (errors.Is(err, syscall.ECONNRESET)), os.ErrDeadlineExceeded for
// deadlines, net.ErrClosed after Close, and a bare io.EOF from Read after
// the peer's FIN.
//
// Time is the stack's clock (stack.Options.Clock), the one the engine's
// retransmission and TIME-WAIT timers read: deadlines, Dialer.Timeout and
// a lingering Close are measured on it. With the default, the real clock,
// they behave as package net's. With a fake clock (a
// faketime.ManualClock in tests) they pass only when the clock is
// advanced, so set deadlines from the stack's Clock().Now(), not from
// time.Now(). A context's deadline is the caller's, on the real clock.
package conn
