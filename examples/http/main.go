// Command http serves net/http on tapstack, and fetches from it with a Go
// http.Client whose connections go through tapstack too.
//
// By default it needs no privileges: a server stack (192.0.2.1) and a
// client stack (192.0.2.2) share an in-memory Ethernet cable
// (stack.NewPair).
// The client GETs 8 MiB and POSTs 8 MiB, and both sides check a SHA-256 of
// the body:
//
//	go run ./examples/http
//	go run ./examples/http -tls      # the same over crypto/tls
//
// -tls serves HTTPS with a self-signed ECDSA P-256 certificate generated at
// start; the in-memory client trusts it through a certificate pool.
//
// With -tap it serves on a Linux TAP device instead, until Ctrl-C, so curl on
// the host gets the page (needs CAP_NET_ADMIN, or a TAP owned by the user):
//
//	go run ./examples/http -tap tap0 -addr 192.0.2.2/24
//	ip addr add 192.0.2.1/24 dev tap0; ip link set tap0 up
//	curl http://192.0.2.2/
//	curl http://192.0.2.2/data?size=1048576 | sha256sum
//	go run ./examples/http -tap tap0 -addr 192.0.2.2/24 -tls   # curl -k https://192.0.2.2/
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack"
)

func main() {
	var cfg config
	flag.BoolVar(&cfg.tls, "tls", false, "serve HTTPS with a certificate generated at start")
	flag.StringVar(&cfg.tap, "tap", "", "serve on this Linux TAP device instead of the in-memory demo")
	flag.TextVar(&cfg.addr, "addr", netip.Prefix{}, "the stack's address/prefix on the TAP device, e.g. 192.0.2.2/24")
	flag.IntVar(&cfg.port, "port", 0, "port to serve on (default 80, or 443 with -tls)")
	flag.Int64Var(&cfg.size, "size", 8<<20, "bytes to GET and POST in the in-memory demo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cfg.check(flag.Args())
	if err == nil {
		err = run(ctx, os.Stdout, cfg)
	}
	if err != nil {
		log.Fatalf("http: %v", err)
	}
}

// config is what the flags say.
type config struct {
	tls  bool
	tap  string
	addr netip.Prefix
	size int64
	port int
}

// check checks the flags that go together and fills in the port.
func (cfg *config) check(args []string) error {
	switch {
	case len(args) > 0:
		return fmt.Errorf("unexpected argument %q", args[0])
	case cfg.addr.IsValid() && cfg.tap == "":
		return errors.New("-addr needs -tap")
	case cfg.port == 0 && cfg.tls:
		cfg.port = 443
	case cfg.port == 0:
		cfg.port = 80
	}
	return nil
}

// run serves on the TAP device until ctx is done, or runs the in-memory
// demo.
func run(ctx context.Context, w io.Writer, cfg config) error {
	if cfg.tap == "" {
		return inMemory(ctx, w, cfg)
	}
	s, err := stack.OpenTAP(cfg.tap, cfg.addr, stack.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := conn.Listen(s, "tcp", netip.AddrPortFrom(cfg.addr.Addr(), uint16(cfg.port)).String())
	if err != nil {
		return err
	}
	var l net.Listener = ln
	scheme := "http"
	if cfg.tls {
		cert, _, err := selfSigned(cfg.addr.Addr())
		if err != nil {
			return err
		}
		l = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		scheme = "https"
	}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	defer context.AfterFunc(ctx, func() { srv.Close() })()
	fmt.Fprintf(w, "serving %s://%s/ (try: curl%s %s://%s/); Ctrl-C stops\n",
		scheme, ln.Addr(), map[bool]string{true: " -k"}[cfg.tls], scheme, ln.Addr())
	err = srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// inMemory runs server and client over an in-memory cable: GET and POST
// cfg.size bytes, with hashes checked on both sides.
func inMemory(ctx context.Context, out io.Writer, cfg config) error {
	p, err := stack.NewPair(stack.PairOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := conn.Listen(p.Server, "tcp", netip.AddrPortFrom(p.ServerAddr, uint16(cfg.port)).String())
	if err != nil {
		return err
	}
	var l net.Listener = ln
	scheme := "http"
	tr := &http.Transport{
		DialContext:       (&conn.Dialer{Stack: p.Client}).DialContext,
		ForceAttemptHTTP2: false,
	}
	if cfg.tls {
		cert, leaf, err := selfSigned(p.ServerAddr)
		if err != nil {
			return err
		}
		l = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		scheme = "https"
	}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		<-served
	}()
	httpc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	defer tr.CloseIdleConnections()
	base := fmt.Sprintf("%s://%s", scheme, ln.Addr())
	fmt.Fprintf(out, "server at %s, client on 192.0.2.2, over an in-memory cable\n", base)

	// GET the page.
	body, err := get(ctx, httpc, base+"/")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "GET / %q\n", bytes.TrimSpace(body))

	// GET cfg.size bytes; the server sends the digest in a header.
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/data?size=%d", base, cfg.size), nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET /data: %w", err)
	}
	got, want := hex.EncodeToString(h.Sum(nil)), resp.Header.Get("X-Sha256")
	fmt.Fprintf(out, "GET /data: %d bytes in %v, sha256 %s, server says %s: %s\n", n, time.Since(start).Round(time.Millisecond), got[:16], want[:min(16, len(want))], verdict(n == cfg.size && got == want))
	if n != cfg.size || got != want {
		return fmt.Errorf("GET /data: %d bytes, sha256 %s; want %d bytes, %s", n, got, cfg.size, want)
	}

	// POST cfg.size bytes; the server answers with the digest it computed.
	start = time.Now()
	hw := sha256.New()
	req, err = http.NewRequestWithContext(ctx, "POST", base+"/upload", io.TeeReader(io.LimitReader(newStream(2), cfg.size), hw))
	if err != nil {
		return err
	}
	req.ContentLength = cfg.size
	resp, err = httpc.Do(req)
	if err != nil {
		return err
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("POST /upload: %w", err)
	}
	sent := hex.EncodeToString(hw.Sum(nil))
	wantReply := fmt.Sprintf("%d %s\n", cfg.size, sent)
	fmt.Fprintf(out, "POST /upload: %d bytes in %v, sha256 %s, server says %s", cfg.size, time.Since(start).Round(time.Millisecond), sent[:16], reply)
	if string(reply) != wantReply {
		return fmt.Errorf("POST /upload: server received %q, want %q", reply, wantReply)
	}
	fmt.Fprintln(out, "POST /upload:", verdict(true))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISMATCH"
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// maxSize bounds /data?size=.
const maxSize = 1 << 30

// handler serves:
//
//	GET /                 a short page
//	GET /data?size=N      N pseudo-random bytes, with X-Sha256 (hex) of them
//	POST /upload          answers "<bytes> <sha256 hex>\n" of the body
func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from tapstack: %s %s from %s\n", r.Proto, r.Method, r.RemoteAddr)
	})
	mux.HandleFunc("GET /data", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		if err != nil || n < 0 || n > maxSize {
			http.Error(w, "size: want 0 to 1 GiB", http.StatusBadRequest)
			return
		}
		// The digest goes in a header, so it is computed first over the
		// same deterministic stream.
		h := sha256.New()
		io.Copy(h, io.LimitReader(newStream(1), n))
		w.Header().Set("X-Sha256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(newStream(1), n))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		var h hash.Hash = sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	})
	return mux
}

// stream is a deterministic pseudo-random byte stream.
type stream struct{ r *mrand.ChaCha8 }

func newStream(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return &stream{mrand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// selfSigned makes an ECDSA P-256 certificate for addr, valid for a day.
func selfSigned(addr netip.Addr) (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tapstack example"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{addr.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}
