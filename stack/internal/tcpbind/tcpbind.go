// Package tcpbind is the seam between package stack and tapstack's TCP
// engine (package stack/tcp): what package stack needs of the engine to
// run it inside gVisor's netstack, which is no part of the engine's user
// interface (RFC 9293 3.10) and so is not exported by it.
//
// tcp.NewProtocol returns an engine and its Binding; package stack
// registers Binding.Factory with gVisor and drives the engine's life
// through the other functions. Being internal, this package keeps gVisor
// types out of the engine's exported API while letting the two packages
// that must meet them do so.
package tcpbind

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Binding is the engine's side of the seam. Every function is set.
type Binding struct {
	// Factory goes in stack.Options.TransportProtocols: it makes the
	// engine gVisor's transport protocol for number 6 in that stack. A
	// Binding serves one stack.
	Factory stack.TransportProtocolFactory

	// LinkDown ends every connection through interface nic, whose link
	// failed, with ENETDOWN, and deletes its connections in TIME-WAIT.
	// Nothing is sent: the link is gone. Listeners stay.
	LinkDown func(nic tcpip.NICID, failure error)

	// BatchLink says that the link of interface nic hands the stack its
	// inbound frames in bursts and marks the end of each by calling the
	// function returned, on the goroutine that delivered the burst, with
	// no stack lock held. The engine then sends the ACK that a burst of
	// in-order text makes due once, at its end (stack/tcp/batch.go).
	BatchLink func(nic tcpip.NICID) func()

	// QueueLink says that the link of interface nic has an outbound
	// queue and that room reports how many more frames it takes before
	// it holds so many of the stack's frames that new data should wait
	// (TCP small queues, stack/tcp/smallqueues.go). It returns what the
	// link calls whenever it has taken frames out of that queue, on its
	// own goroutine, with no stack lock held: the data held back goes.
	QueueLink func(nic tcpip.NICID, room func() int) (roomOpened func())

	// Shutdown begins closing every connection the way its peer can see
	// (a FIN after the queued data, or a RST where received data would
	// be discarded unread) and closes the listeners; no new connection
	// is made. Drained is closed once every connection has reached
	// CLOSED or TIME-WAIT; it is nil before Shutdown.
	Shutdown func()
	Drained  func() <-chan struct{}

	// ICMP goes in gVisor's demuxer as a raw endpoint for both ICMP
	// and ICMPv6 (stack.RegisterRawTransportEndpoint), once the stack is
	// made: the engine takes from it the ICMP errors that gVisor's IPv4
	// and IPv6 do not pass on (stack/tcp/icmp4.go, icmp6.go).
	ICMP stack.RawTransportEndpoint

	// Abort closes every listener and aborts every connection: the
	// stack is closing at once (RFC 9293 3.10.5; see Endpoint.Reset
	// for what the peer is sent).
	Abort func()
}
