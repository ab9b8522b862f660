package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Start the monitor, scrape /metrics twice, and see the counters rise and
// the histograms fill.
func TestMetricsRise(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{listen: "127.0.0.1:0", every: 5 * time.Millisecond}, func(a string) { addrc <- a })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("scrape: %v %v", resp.Status, err)
		}
		return string(b)
	}
	value := func(body, series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no series %s", series)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}

	series := []string{
		`tapstack_tcp_segments_total{direction="in",stack="server"}`,
		`tapstack_tcp_opens_total{kind="passive",stack="server"}`,
		`tapstack_tcp_opens_total{kind="active",stack="client"}`,
		`tapstack_tcp_sends_total{cause="SYN-ACK",stack="server"}`,
		`tapstack_tcp_handshake_seconds_count{stack="client"}`,
		`tapstack_tcp_connection_lifetime_seconds_count{stack="server"}`,
	}
	time.Sleep(200 * time.Millisecond)
	first := scrape()
	time.Sleep(300 * time.Millisecond)
	second := scrape()
	for _, s := range series {
		a, b := value(first, s), value(second, s)
		if !(b > a) {
			t.Errorf("%s: %v then %v, want it to rise", s, a, b)
		}
	}
	for _, want := range []string{
		`tapstack_tcp_listen_queue_limit{listener="192.0.2.1:7",queue="syn",stack="server"}`,
		`tapstack_tcp_listen_queue_length{listener="192.0.2.1:7",queue="accept",stack="server"}`,
		`tapstack_tcp_connections{stack="client",state="TIME-WAIT"}`,
		`tapstack_tcp_drops_total{reason="bad checksum",stack="server"}`,
		`tapstack_monitor_events_dropped_total{stack="server"}`,
		`tapstack_tcp_receive_memory_bytes{stack="server"}`,
		`tapstack_tcp_receive_memory_limit_bytes{stack="server"} 1.073741824e+09`,
	} {
		if !strings.Contains(second, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
