package tap

import (
	"encoding/binary"
	"fmt"
)

// The virtio-net header a TAP device opened with IFF_VNET_HDR puts before
// every frame it reads, and expects before every frame written to it
// (struct virtio_net_hdr in include/uapi/linux/virtio_net.h). It says
// whether the frame is a GSO super-frame (one TCP segment of up to 64 KiB
// that stands for several wire segments of gso_size bytes of payload) and
// whether its transport checksum is left for the receiver to finish
// (CHECKSUM_PARTIAL: the checksum field holds the pseudo-header sum, and
// the sum runs from csum_start to the end, stored at csum_start +
// csum_offset).
//
// The TUN driver uses the legacy header of 10 bytes in the host's byte
// order unless told otherwise (TUNSETVNETHDRSZ, TUNSETVNETLE): we tell it
// nothing, so we use the host's order, binary.NativeEndian.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // Ethernet + IP + TCP headers of a super-frame
	gsoSize    uint16 // payload bytes per wire segment
	csumStart  uint16 // where the checksummed bytes start, from the frame's first byte
	csumOffset uint16 // where the checksum goes, from csumStart
}

// vnetHdrLen is sizeof(struct virtio_net_hdr).
const vnetHdrLen = 10

// Flags and GSO types of struct virtio_net_hdr.
const (
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum is partial
	vnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the checksum was verified

	vnetGSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO)
	vnetGSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	vnetGSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	vnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the super-frame had CWR set
)

// encode writes h into b[:vnetHdrLen].
func (h *vnetHdr) encode(b []byte) {
	_ = b[vnetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

// decodeVnetHdr reads the header at the start of b.
func decodeVnetHdr(b []byte) (vnetHdr, error) {
	if len(b) < vnetHdrLen {
		return vnetHdr{}, fmt.Errorf("virtio-net header: %d bytes, want %d", len(b), vnetHdrLen)
	}
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:]),
		csumStart:  binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:]),
	}, nil
}

// String formats h the way a reader of virtio_net.h names the fields.
func (h vnetHdr) String() string {
	return fmt.Sprintf("flags %#x gso_type %#x hdr_len %d gso_size %d csum_start %d csum_offset %d",
		h.flags, h.gsoType, h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset)
}
