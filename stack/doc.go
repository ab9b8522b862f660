// Package stack builds a tapstack network stack: gVisor's netstack for
// Ethernet, ARP, IPv4, IPv6 and ICMP, with tapstack's own TCP engine
// (package stack/tcp) registered as the transport for protocol 6. gVisor's
// TCP is never part of a tapstack stack.
//
// A Stack is a value: tests run many in one process, each with its own
// clock, addresses, counters and observer.
//
//   - [New] makes a stack with no interfaces; [Stack.AddNIC] attaches a
//     link endpoint (a TAP device, one end of an in-memory cable, or
//     middleware around either) with its addresses and on-link routes.
//   - [NewPair] makes two stacks joined by an in-memory Ethernet cable,
//     192.0.2.2 and 192.0.2.1 unless told otherwise: the network of a
//     demo or a test, with no device and no privileges.
//   - [OpenTAP] (Linux) makes a stack on a TAP device in one call.
//   - [Options].Clock is the only time the stack, its engine and package
//     conn read. A faketime.ManualClock makes a test's retransmissions,
//     TIME-WAIT and deadlines happen when the test advances it.
//   - [Options].TCP.Observer receives every engine event; [NewEventQueue]
//     puts a bounded queue between the engine and a slow observer, and
//     [Fanout] gives the events to several.
//   - [Stack.Close] ends a stack at once (a RST for every connection the
//     peer believes open); [Stack.Shutdown] first lets each close as
//     Conn.Close would.
//
// Package conn turns a stack into Go's net.Conn and net.Listener.
package stack
