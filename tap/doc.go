// Package tap provides the link layer of tapstack: Ethernet link endpoints
// for gVisor's netstack (stack.LinkEndpoint) backed by a Linux TAP device or
// by an in-memory cable, and link middleware that injects faults.
//
//   - [Open] attaches to a Linux TAP device (creating it if needed) and
//     returns a [Device] whose [Device.LinkEndpoint] carries Ethernet frames
//     between the kernel and a gVisor stack. One goroutine reads frames while
//     the endpoint is attached; it stops when the NIC is removed or the device
//     is closed. By default the device uses the kernel's offloads
//     ([WithOffloads]): frames carry a virtio-net header, the kernel hands
//     over TCP super-frames of up to 64 KiB with partial checksums
//     (TSO), which reach the stack whole ([WithGRO]), and a writer
//     goroutine sends runs of one flow's segments as one super-frame with
//     a GSO header, so that the kernel takes 44 segments in one write
//     ([WithCoalescing]). The device vouches for inbound checksums as a NIC
//     does and verifies those the kernel did not. [WireSegments] cuts a
//     super-frame into the wire segments it stands for, as the kernel
//     would; package pcap uses it so that a capture always shows wire
//     segments. Without offloads the read loop joins consecutive segments
//     of one flow, as Linux's GRO does for any NIC ([WithGRO],
//     [JoinsSegments]).
//     [WithQueues] opens a multi_queue device with several queues, each
//     with a read loop and a writer goroutine of its own.
//   - [Pipe] returns the two ends of an in-memory Ethernet cable. Each end is
//     a stack.LinkEndpoint with its own random MAC; frames written on one end
//     arrive on the other. It needs no privileges, so tests and demos use it
//     to connect two stacks in one process.
//   - [NewFault] wraps any link endpoint and applies loss, duplication,
//     reordering, corruption, ECN CE marking and delay to the frames of
//     either direction, driven by a seeded random source so that a failing
//     test can be replayed.
//
// All endpoints expect the network layer above them to be ARP, IPv4 or IPv6:
// they carry whole Ethernet frames and let gVisor's ethernet endpoint add and
// strip the header.
package tap
