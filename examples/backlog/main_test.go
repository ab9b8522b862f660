package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, []string{"-rto", "100ms"}); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"the accept queue holds 3",
		"SYN queued: syn queue 1/1024, accept queue 0/3",
		"accept queue add",
		"accept queue 3/3",
		"SYN dropped: accept queue full",
		"accepted: syn queue",
		"every client accepted",
		"accepted                             6",
		"accept queue add                     6",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Count(got, "Dial returned") != 6 {
		t.Errorf("want 6 clients connected")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

func TestBadArgs(t *testing.T) {
	if err := run(context.Background(), &bytes.Buffer{}, []string{"extra"}); err == nil {
		t.Error("run with an extra argument succeeded")
	}
}
