package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tapstack/tapstack/event"
)

// Facts that no frame carries (a TIME-WAIT expiry, a listener's decision
// on a user's Accept) are written as pcapng custom blocks (pcapng 4.8,
// block type 0x00000BAD: may be copied with the file). A custom block needs
// an IANA Private Enterprise Number; tapstack has none, so it uses 32473,
// the number RFC 5612 reserves for documentation and examples. The block's
// data is UTF-8 text: the time (RFC 3339, nanoseconds), a tab, the
// connection (empty if none), a tab, the note.

const (
	customBlockType = 0x00000BAD
	notePEN         = 32473
)

// Note is one custom block read back from a capture.
type Note struct {
	Time time.Time
	Conn string // the connection, as event.ConnID prints it; empty if none
	Text string
}

func noteBlock(ts time.Time, c event.ConnID, text string) []byte {
	conn := ""
	if c.Local.IsValid() {
		conn = c.String()
	}
	data := ts.UTC().Format(time.RFC3339Nano) + "\t" + conn + "\t" + text
	pad := (4 - len(data)%4) % 4
	total := 12 + 4 + len(data) + pad
	b := make([]byte, 0, total)
	b = binary.LittleEndian.AppendUint32(b, customBlockType)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, notePEN)
	b = append(b, data...)
	b = append(b, make([]byte, pad)...)
	return binary.LittleEndian.AppendUint32(b, uint32(total))
}

// ReadNotes returns the notes (tapstack's custom blocks) of a pcapng
// stream written by a [Writer], in order. Other blocks are skipped. Only
// little-endian sections are read, as the Writer writes them.
func ReadNotes(r io.Reader) ([]Note, error) {
	br := bufio.NewReader(r)
	var notes []Note
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return notes, nil
			}
			return notes, err
		}
		typ := binary.LittleEndian.Uint32(hdr[0:4])
		total := binary.LittleEndian.Uint32(hdr[4:8])
		if total < 12 || total%4 != 0 || total > 1<<26 {
			return notes, fmt.Errorf("pcap: bad block length %d", total)
		}
		body := make([]byte, total-8)
		if _, err := io.ReadFull(br, body); err != nil {
			return notes, err
		}
		if typ != customBlockType || len(body) < 8 || binary.LittleEndian.Uint32(body[0:4]) != notePEN {
			continue
		}
		data := strings.TrimRight(string(body[4:len(body)-4]), "\x00")
		f := strings.SplitN(data, "\t", 3)
		if len(f) != 3 {
			continue
		}
		ts, _ := time.Parse(time.RFC3339Nano, f[0])
		notes = append(notes, Note{Time: ts, Conn: f[1], Text: f[2]})
	}
}
