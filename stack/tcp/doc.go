// Package tcp is tapstack's TCP engine: RFC 9293 written out state by
// state, run by package stack inside gVisor's netstack as the transport
// protocol for number 6.
//
// The engine reads like the RFC. State names, TCB variables and the steps
// of SEGMENT ARRIVES (3.10.7) carry the RFC's names. One function,
// transition, changes state, and only along an edge of one table
// (transitions.go): RFC 9293's state diagram (3.3.2, figure 5), the
// RFC's text, and the departures, Linux's and other RFCs', each with its
// reason. Every discarded segment has a DropReason and every sent segment
// a SendCause (package event), and both are counted and reported to an
// Observer. Time comes only from the stack's clock, so tests drive
// retransmission and TIME-WAIT with a fake clock.
//
// # The user interface
//
// The exported API is the user interface of RFC 9293 3.10 and nothing
// else, with Go names and net/netip addresses:
//
//	OPEN (active)   Protocol.Connect(local, remote netip.AddrPort) (*Endpoint, error)
//	OPEN (passive)  Protocol.Listen(local netip.AddrPort, backlog int) (*Listener, error); Listener.Accept
//	SEND            Endpoint.Write; Endpoint.WriteFrom, WriteFromN (from an io.Reader, read into the send buffer's view)
//	RECEIVE         Endpoint.Read; Endpoint.ReadTo (to an io.Writer, from the buffer's memory)
//	CLOSE           Endpoint.Close (both directions), Endpoint.CloseWrite (ours only);
//	                Endpoint.CloseRead is shutdown(2)'s SHUT_RD; Listener.Close
//	ABORT           Endpoint.Reset
//	STATUS          Endpoint.State, Endpoint.Info (a copy of the TCB and a TCP_INFO-like
//	                snapshot), Endpoint.ID; Listener.State, Listener.Queues, Listener.Addr
//
// None of them blocks: a call that cannot make progress returns
// ErrWouldBlock, and Changed returns a channel closed at the next change
// (ReadWakeup and WriteWakeup, one reusable channel per connection and
// direction, serve a reader and a writer that wait again and again),
// which package conn turns into net.Conn and net.Listener. Options such as
// SetNoDelay and SetKeepAlive are the socket options of the same calls.
// Protocol also reports what the engine holds and has done: Connections,
// Listeners, Stats, Limits, Usage. Errors are syscall errnos
// (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...); package conn wraps them in
// *net.OpError.
//
// What gVisor needs of the engine (its TransportProtocol and
// TransportEndpoint methods) lives on unexported adapter types
// (netstack.go), and what package stack needs to run it (registration,
// link failure, shutdown, teardown) is the internal tcpbind.Binding that
// NewProtocol returns with the engine: neither is part of this API.
//
// # Names across tapstack
//
// One naming scheme runs through the packages, so a name means the same
// call wherever it appears:
//
//   - Close is the RFC's CLOSE, the graceful end: Endpoint.Close sends a
//     FIN after the queued data; conn.Conn.Close and conn.Listener.Close
//     are the same calls. Close<Part> ends one part and leaves the rest
//     working: CloseWrite, CloseRead, pcap.Writer.CloseCapture (the
//     capture ends, frames still flow).
//   - Reset is the RFC's ABORT: a RST where the peer still believes in the
//     connection, and the TCB deleted. Nothing exported is named Abort.
//   - For a whole stack, stack.Stack.Shutdown is the graceful way (every
//     connection gets CLOSE, then the stack waits) and stack.Stack.Close
//     the immediate one (every connection is aborted). The engine exports
//     neither: package stack drives them through tcpbind.
//   - Endpoint() returns the engine object behind an adapter:
//     conn.Conn.Endpoint() is the *tcp.Endpoint, conn.Listener.Endpoint()
//     the *tcp.Listener. stack.Stack.TCP() returns the engine itself.
//   - An observer is an event.Observer, a func(event.Event). A type that
//     consumes events offers Observer(next) returning one that files the
//     event and then calls next (pcap.Writer.Observer, and
//     pcap.Writer.FaultObserver for tap's fault events);
//     stack.NewEventQueue returns one that queues for a slow consumer.
//   - The vocabulary of events (State, Event, Kind, Cause, DropReason,
//     SendCause, SegKey, SegmentInfo, ConnID) has one home, package event,
//     which the engine, pcap, the CLI and the examples import.
//   - Addresses in exported signatures are net/netip values (Addr,
//     AddrPort, Prefix); gVisor's types stay behind package stack.
package tcp
