// Package event is the vocabulary in which tapstack's TCP engine reports
// what it does: connection states (State, named as RFC 9293 3.3.2 names
// them), the Events an Observer receives, why a segment was dropped
// (DropReason) or sent (SendCause), what caused a state change (Cause),
// and a segment's identity on the wire (SegKey, SegmentInfo).
//
// The engine (package stack/tcp) makes events; link middleware such as
// package pcap, the CLI and monitoring programs read them. They all
// import this package and none of them needs the engine for its
// vocabulary: a capture writer that files events on frames depends on
// this package alone.
//
// Every type here is a plain value. Names are stable: they appear in
// traces, counters and pcapng comments.
package event
