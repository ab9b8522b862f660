package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestStory: the program tells the story of its doc comment, step by
// step, with these decisions.
func TestStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := story(ctx, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	// The decisions in order, as the doc comment tells them.
	want := []string{
		"the accept queue holds 3",
		"--- 1.", "SYN queued (SYN queue 5/1024, accept queue 0/3)",
		"every client has its SYN-ACK",
		"--- 2.", "accept queue add (SYN queue 2/1024, accept queue 3/3)",
		"final ACK of client 3 dropped: accept queue full", "final ACK of client 4 dropped: accept queue full",
		"--- 3.", "server: SYN-ACK retransmit #1 to client 3", "server: SYN-ACK retransmit #1 to client 4", "final ACK of client 4 dropped: accept queue full",
		"--- 4.", "SYN of latecomer dropped: accept queue full",
		"--- 5.", "accepted (accept queue 0/3)", "latecomer SYN-RECEIVED → ESTABLISHED",
		"SYN-ACK retransmit #2 to client 3", "SYN-ACK retransmit #2 to client 4", "client 4 SYN-RECEIVED → ESTABLISHED",
		"every client accepted",
		"accept queue add                     6",
		"accept queue overflow: ACK dropped   4",
		"accepted                             6",
	}
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q after the previous step:\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
}

// TestSameStoryEveryRun: 20 runs print the same decisions, byte for byte.
func TestSameStoryEveryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var first string
	for i := range 20 {
		var out bytes.Buffer
		if err := story(ctx, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if i == 0 {
			first = out.String()
			continue
		}
		if out.String() != first {
			t.Fatalf("run %d differs from run 0:\n%s\nrun 0:\n%s", i, out.String(), first)
		}
	}
}
