package event

import "fmt"

// DropReason names why an inbound segment was discarded, in the spirit of
// Linux's skb_drop_reason: every discard has one, and a counter per reason.
type DropReason uint8

// The drop reasons. Keep names stable: they appear in traces, counters and
// pcapng comments.
const (
	DropNone                 DropReason = iota
	DropMalformed                       // header too short or data offset out of range
	DropBadChecksum                     // checksum did not verify
	DropNoSocket                        // no connection and no listener (answered with RST)
	DropOutOfWindow                     // sequence number outside the receive window (3.10.7.4 first step)
	DropOldSequence                     // entirely old duplicate
	DropNoAck                           // ACK bit off in a synchronized state (3.10.7.4 fifth step)
	DropInvalidAck                      // ACK outside SND.UNA-MAX.SND.WND..SND.NXT (RFC 5961 5.2)
	DropAckUnsent                       // ACK of data never sent
	DropRstInvalid                      // RST that is not acceptable (RFC 5961 3.2)
	DropSynUnexpected                   // SYN in a synchronized state (RFC 5961 4.2)
	DropListenAck                       // ACK to a listener with no matching half-open entry
	DropListenRst                       // RST to a listener (3.10.7.2: ignore)
	DropListenNoSyn                     // neither SYN, ACK nor RST to a listener
	DropSynQueueFull                    // the SYN queue is at its limit
	DropAcceptQueueFull                 // the accept queue is at its limit
	DropSynSentBadAck                   // ACK to our SYN that does not acknowledge it
	DropClosed                          // the connection is closed
	DropBufferFull                      // no room in the receive buffer
	DropChallengeRateLimited            // challenge ACK suppressed by the rate limit
	DropCookieInvalid                   // ACK to a listener whose SYN cookie does not verify (RFC 4987 3.6)
	DropPAWS                            // TSval older than TS.Recent (RFC 7323 5.3, PAWS)
	DropOutOfOrderQueueFull             // out-of-order text with no room in the reassembly queue, even after pruning above it
	DropOutOfOrderPruned                // held out-of-order text discarded to make room for text below it (RFC 2018 8 reneging; Linux tcp_prune_ofo_queue)
	DropDataAfterFin                    // out-of-order text at or beyond a FIN already held: the stream ends there
	DropAckRateLimited                  // the ACK an unacceptable segment asks for, suppressed by the per-connection limit (Linux tcp_invalid_ratelimit)
	DropZeroWindow                      // data into a zero receive window (RFC 9293 3.10.7.4: not acceptable)
	DropICMPOutOfWindow                 // ICMP error quoting a sequence number we did not send (RFC 5927 4.1)
	DropICMPBadQuote                    // ICMP error whose quoted header does not match the connection
	DropICMPNoConnection                // ICMP error for no connection: a listener's port, TIME-WAIT, or a 4-tuple no socket holds (which gVisor's IP discards before TCP sees it)
	DropConnectionLimit                 // a SYN or cookie ACK refused: the stack holds MaxConnections
	DropICMPBadMTU                      // ICMP packet too big reporting an MTU below the protocol's minimum (IPv6: 1280), or not below the path MTU (RFC 1191 5, RFC 8201 4: never raised), or arriving while a lowered MTU is locked
	DropStaleFin                        // a FIN held out of order that in-order text then passed (Linux tcp_ofo_queue)
	DropRstTimeWait                     // a RST in TIME-WAIT, ignored (RFC 1337 3; Options.RFC1337, Linux tcp_rfc1337=1)
	DropNoRoute                         // a SYN or cookie ACK to a listener with no route back to its source: nothing can answer it (Linux tcp_conn_request's route_req failing, a ListenDrops)
	DropTupleInUse                      // a SYN or cookie ACK whose 4-tuple another connection took while it was handled (a copy of it, on another goroutine)
	DropReceiveMemory                   // text dropped: the stack's connections hold ReceiveMemoryLimit bytes of received data (Linux's tcp_mem: TCPRcvQDrop, TCPOFODrop)
	DropICMPShortQuote                  // ICMP error quoting a TCP segment of ours whose quote ends before the 8 bytes of TCP header with the ports and sequence number (RFC 792), or inside the quoted IP header; gVisor's IPv4 and IPv6 discard it before TCP sees it, Linux's icmp_unreach too
	DropICMPFragmentQuote               // ICMP error quoting a later fragment of a TCP segment of ours: its first 8 bytes are no TCP header (gVisor's IPv4 and IPv6 discard it before TCP sees it)
	DropICMPForeignQuote                // ICMP error quoting a TCP segment whose source is none of our addresses: not about anything we sent (gVisor's IPv4 and IPv6 discard it before TCP sees it)
	numDropReasons                      // keep last
)

var dropNames = [...]string{
	DropNone:                 "none",
	DropMalformed:            "malformed header",
	DropBadChecksum:          "bad checksum",
	DropNoSocket:             "no socket",
	DropOutOfWindow:          "out of window",
	DropOldSequence:          "old sequence",
	DropNoAck:                "no ACK",
	DropInvalidAck:           "invalid ACK",
	DropAckUnsent:            "ACK of unsent data",
	DropRstInvalid:           "RST invalid",
	DropSynUnexpected:        "unexpected SYN",
	DropListenAck:            "ACK to listener",
	DropListenRst:            "RST to listener",
	DropListenNoSyn:          "no SYN to listener",
	DropSynQueueFull:         "SYN queue full",
	DropAcceptQueueFull:      "accept queue full",
	DropSynSentBadAck:        "bad ACK in SYN-SENT",
	DropClosed:               "connection closed",
	DropBufferFull:           "receive buffer full",
	DropChallengeRateLimited: "challenge ACK rate limited",
	DropCookieInvalid:        "SYN cookie invalid",
	DropPAWS:                 "PAWS: old timestamp",
	DropOutOfOrderQueueFull:  "out-of-order queue full",
	DropOutOfOrderPruned:     "out-of-order data pruned",
	DropDataAfterFin:         "data after FIN",
	DropAckRateLimited:       "ACK rate limited",
	DropZeroWindow:           "zero window",
	DropICMPOutOfWindow:      "ICMP: quoted sequence out of window",
	DropICMPBadQuote:         "ICMP: quote does not match",
	DropICMPNoConnection:     "ICMP: no connection",
	DropConnectionLimit:      "connection limit",
	DropICMPBadMTU:           "ICMP: MTU below minimum",
	DropStaleFin:             "stale FIN",
	DropRstTimeWait:          "RST in TIME-WAIT ignored (RFC 1337)",
	DropNoRoute:              "no route",
	DropTupleInUse:           "4-tuple in use",
	DropReceiveMemory:        "receive memory limit",
	DropICMPShortQuote:       "ICMP: quote too short",
	DropICMPFragmentQuote:    "ICMP: quote of a later fragment",
	DropICMPForeignQuote:     "ICMP: quote from a foreign address",
}

func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// SendCause names why a segment was sent.
type SendCause uint8

// The send causes.
const (
	SendData SendCause = iota
	SendAck
	SendDelayedAck
	SendWindowUpdate
	SendSyn
	SendSynAck
	SendRetransmit
	SendFastRetransmit
	SendSynRetransmit
	SendSynAckRetransmit
	SendWindowProbe
	SendChallengeAck
	SendRst
	SendFin
	SendKeepalive
	SendSynAckCookie // a stateless SYN-ACK whose ISS is a SYN cookie (RFC 4987 3.6)
	SendTLP          // a tail loss probe (RFC 8985 7)
	numSendCauses    // keep last
)

var sendNames = [...]string{
	SendData:             "data",
	SendAck:              "ack",
	SendDelayedAck:       "delayed ack",
	SendWindowUpdate:     "window update",
	SendSyn:              "SYN",
	SendSynAck:           "SYN-ACK",
	SendRetransmit:       "retransmit",
	SendFastRetransmit:   "fast retransmit",
	SendSynRetransmit:    "SYN retransmit",
	SendSynAckRetransmit: "SYN-ACK retransmit",
	SendWindowProbe:      "window probe",
	SendChallengeAck:     "challenge ACK",
	SendRst:              "RST",
	SendFin:              "FIN",
	SendKeepalive:        "keepalive",
	SendSynAckCookie:     "SYN-ACK (cookie)",
	SendTLP:              "tail loss probe",
}

func (c SendCause) String() string {
	if int(c) < len(sendNames) {
		return sendNames[c]
	}
	return fmt.Sprintf("SendCause(%d)", uint8(c))
}

// NumDropReasons and NumSendCauses size arrays indexed by DropReason and
// SendCause, such as the engine's counters: every reason and cause is
// below them.
const (
	NumDropReasons = int(numDropReasons)
	NumSendCauses  = int(numSendCauses)
)
