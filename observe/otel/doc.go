// Package otel turns the lifecycles of tapstack's TCP connections into
// OpenTelemetry traces: one trace per connection, its phases as spans,
// its retransmissions, timeouts, drops, window changes and state changes
// as span events.
//
// A [Tracer] is an engine observer (event.Observer) fed by the stack's
// events; it needs a TracerProvider (the SDK's, exporting over OTLP with
// [NewOTLPProvider], or any other). The engine, package conn and the rest
// of tapstack import no OpenTelemetry package: only this one does.
//
//	tr := otel.New(otel.Options{TracerProvider: tp})
//	s := stack.New(stack.Options{TCP: tcp.Options{Observer: tr.Observe}, ConnContext: tr.ConnContext})
//
// The Tracer runs on the engine's goroutines, synchronously, so that a
// connection's span exists by the time Dial or Accept returns it. With
// [Tracer.ConnContext] as the stack's Options.ConnContext, conn.Conn's
// Context carries that span, for an application's own spans to be its
// children or link to it; [Tracer.SpanContext], [Tracer.Link] and
// [Tracer.ContextWithConn] find it from any net.Conn's addresses.
//
// # Spans
//
//	tcp.connection            root, kind client (active open) or server (passive)
//	├── tcp.handshake         first SYN → ESTABLISHED (RFC 9293 3.5)
//	│   └── tcp.syn_queue     passive: SYN queued → handshake complete (half-open)
//	├── tcp.accept_queue      passive: ESTABLISHED → accepted by the application
//	├── tcp.transfer          ESTABLISHED → first FIN either way
//	└── tcp.teardown          first FIN → CLOSED (RFC 9293 3.6)
//	    └── tcp.time_wait     TIME-WAIT → CLOSED (2*MSL)
//
// A connection that fails ends every open span at the transition to
// CLOSED; the root and the phase it failed in get status Error and
// error.type.
//
// # Attributes and events
//
// Names follow the OpenTelemetry semantic conventions (v1.43.0) where
// they have one; the rest are tcp.*.
//
//	name                        on                     value
//	network.transport           root                   "tcp"
//	network.type                root                   "ipv4" or "ipv6"
//	network.local.address/port  root                   the stack's end
//	network.peer.address/port   root                   the other end
//	server.address/port         root                   the passive end (the listener's)
//	client.address/port         root                   the active end
//	network.connection.state    root, at close         the state before CLOSED, as the convention spells it ("time_wait")
//	error.type                  root and failed phase  the error the application got: ECONNRESET, ECONNREFUSED, ETIMEDOUT or the ICMP error heard before (EHOSTUNREACH, ENETUNREACH), ECONNABORTED (we reset), ENETDOWN (link)
//	tcp.role                    root                   "active" or "passive"
//	tcp.state.final             root, at close         the state before CLOSED, RFC 9293 name ("TIME-WAIT")
//	tcp.close.cause             root, at close         what made the last transition ("timer time-wait", "segment ... Flags [R]")
//	tcp.bytes_sent              root, at close         payload bytes sent, retransmissions included (Linux tcpi_bytes_sent)
//	tcp.bytes_acked             root, at close         payload bytes the peer acknowledged (tcpi_bytes_acked)
//	tcp.bytes_received          root, at close         payload bytes received in order (tcpi_bytes_received)
//	tcp.bytes_retransmitted     root, at close         payload bytes sent again
//	tcp.retransmits             root, at close         segments retransmitted, SYN and SYN-ACK included
//	tcp.rto_count               root, at close         retransmission timeouts
//	tcp.drops                   root, at close         inbound segments the engine dropped
//	tcp.srtt_us, tcp.cwnd       root, at close         the last smoothed RTT (RFC 6298) and congestion window
//	tcp.events_dropped          root, at close         span events over Options.MaxEventsPerConn
//	tcp.syn_cookie              tcp.handshake          true when the connection came from a SYN cookie (RFC 4987)
//	tcp.syn_queue.length/limit  syn_queue, accept_queue, tcp.queue events   the listener's queues at that moment
//	tcp.accept_queue.length/limit                      idem
//	tcp.accept_queue.outcome    tcp.accept_queue       "accepted" or "accept queue remove"
//	tcp.teardown.first_fin      tcp.teardown           "local" or "peer"
//	tcp.link                    Tracer.Link's link     "connection"
//
//	span event         on              attributes
//	tcp.state_change   root            tcp.state.from, tcp.state.to, tcp.cause
//	tcp.retransmit     current phase   tcp.retransmit.cause ("retransmit", "fast retransmit", "SYN retransmit", "tail loss probe", ...), tcp.retransmit.attempt, tcp.seq, tcp.segment.length
//	tcp.rto            current phase   tcp.rto_us (the backed-off RTO), tcp.cwnd, tcp.ssthresh
//	tcp.drop           current phase   tcp.drop.reason (event.DropReason's name), tcp.segment
//	tcp.window_closed  current phase   tcp.window.side: "peer" (it advertised 0) or "local" (we did)
//	tcp.window_opened  current phase   tcp.window.side
//	tcp.queue          current phase   tcp.queue.decision (a listener's decision, such as "accept queue overflow: final ACK dropped"), queue lengths
//	tcp.recovery       current phase   tcp.recovery (what loss recovery did), tcp.cwnd, tcp.ssthresh
//	tcp.path_mtu       current phase   tcp.path_mtu
//
// Times are the engine's event times, so on a fake clock a trace is
// reproducible to the nanosecond.
//
// # Bounds
//
// Whether a connection is traced is decided once, on its first event
// (Options.Sample, then the provider's sampler); a refused connection
// leaves no state. At most Options.MaxConns connections are traced at
// once, each with at most four spans open and Options.MaxEventsPerConn
// span events; connections over the bound are counted (Stats.OverLimit)
// and not traced. Ended spans are the exporter's to buffer:
// [NewOTLPProvider] queues at most DefaultMaxQueueSize spans, never waits
// on the collector, and counts in [OTLPProvider.ExportStats] every span it
// exported, failed to export, dropped on a full queue, or holds.
package otel
