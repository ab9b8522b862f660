// Package plot draws a captured TCP connection as one self-contained HTML
// page: a time-sequence graph (data segments as bars at their sequence
// numbers, the ACK line, the receive window, SACK blocks, retransmissions,
// probes and drops marked with the engine's cause and reason), the
// congestion window, ssthresh, bytes in flight, SRTT and RTO over time, a
// state timeline for both ends with the cause of each transition, the
// listeners' SYN and accept queues, and a ladder diagram of the first and
// last frames. Hovering any mark shows its frame's number and comment, so
// the picture maps back to Wireshark.
//
// Everything the page needs comes from the capture: a capture written by
// tapstack's pcap.Writer carries the engine's events (pcap.ReadEvents) and
// a comment per frame; a capture without them (tcpdump, Wireshark) still
// draws the time-sequence graph, the in-flight and RTT estimates and
// states read off the segments.
//
// The page needs no network: its script, style and data are inline, the
// charts plain SVG. Long captures stay smooth: the script merges points
// that fall on the same pixel column, and never merges a point that marks
// an event (a retransmission, a probe, a drop).
package plot

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
)

//go:embed page.js
var pageJS string

//go:embed page.css
var pageCSS string

// ErrCutShort is wrapped by the error of Read, ReadFile and File for a
// capture that ends inside a frame after whole ones, as one whose writer
// was killed before it closed the file. They return the data of the
// frames before the cut with it, and File writes their page.
var ErrCutShort = errors.New("capture cut short")

// Read reads a capture (pcapng or pcap) and returns the data of its page.
// title names the page, usually the capture's file name.
func Read(r io.Reader, title string) (*Data, error) {
	c, err := readCapture(r)
	if err != nil {
		return nil, err
	}
	d := build(c, title)
	if c.cut > 0 {
		return d, fmt.Errorf("%w in frame %d (the file ends inside it); the %d frames before it are drawn", ErrCutShort, c.cut, c.cut-1)
	}
	return d, nil
}

// ReadFile is Read on the capture at path.
func ReadFile(path string) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, filepath.Base(path))
}

// The data sits in the page between these markers, as JSON; Extract reads
// it back.
const (
	dataOpen  = `<script id="tapstack-data" type="application/json">`
	dataClose = `</script>`
)

// WriteHTML writes d's page to w.
func WriteHTML(w io.Writer, d *Data) error {
	// encoding/json escapes <, > and & in strings, so no "</script>" can
	// end the data early.
	j, err := json.Marshal(d)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Grow(len(j) + len(pageJS) + len(pageCSS) + 1024)
	title := html.EscapeString(d.Title)
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s · tapstack plot</title>\n", title)
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>\n")
	b.WriteString(pageCSS)
	b.WriteString("</style>\n</head>\n<body>\n")
	fmt.Fprintf(&b, "<header><h1>%s</h1><div id=\"summary\"></div></header>\n<main id=\"main\"></main>\n<div id=\"tip\" hidden></div>\n", title)
	b.WriteString(dataOpen)
	b.Write(j)
	b.WriteString(dataClose + "\n<script>\n")
	b.WriteString(pageJS)
	b.WriteString("</script>\n</body>\n</html>\n")
	_, err = w.Write(b.Bytes())
	return err
}

// File plots the capture at capturePath into a page at htmlPath.
func File(capturePath, htmlPath string) (*Data, error) {
	d, err := ReadFile(capturePath)
	if d == nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, d); err != nil {
		return nil, err
	}
	if err := os.WriteFile(htmlPath, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return d, err // ErrCutShort, or nil
}

// Extract returns the data embedded in a page WriteHTML wrote.
func Extract(page []byte) (*Data, error) {
	i := bytes.Index(page, []byte(dataOpen))
	if i < 0 {
		return nil, errors.New("plot: no tapstack data in the page")
	}
	rest := page[i+len(dataOpen):]
	j := bytes.Index(rest, []byte(dataClose))
	if j < 0 {
		return nil, errors.New("plot: the page's data is not closed")
	}
	var d Data
	if err := json.Unmarshal(rest[:j], &d); err != nil {
		return nil, fmt.Errorf("plot: the page's data: %w", err)
	}
	return &d, nil
}
