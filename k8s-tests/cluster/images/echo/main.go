// yolo-echo: a tiny static HTTP server and client for the real-node tests.
//
//	yolo-echo serve [ADDR]                  answer every request with JSON {pod, path, from} (default :8080)
//	yolo-echo get URL [CA_FILE TOKEN_FILE]  GET URL and print the body; exits 1 unless 2xx
//	yolo-echo resolve NAME                  print NAME's addresses from the pod's resolver
//
// get and resolve retry failures for up to 20 s (40 tries), so that a Service that is a second
// old (kube-proxy, CoreDNS not synced yet) does not fail a test.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func serve(addr string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"pod": host, "path": r.URL.Path, "from": r.RemoteAddr})
	})
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
		fmt.Println("shutting down")
		_ = srv.Close()
	}()
	fmt.Printf("serving on %s as %s\n", addr, host)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func get(url string, caFile, tokenFile string) {
	tr := &http.Transport{}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fail(err)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			fail(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if tokenFile != "" {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			fail(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var last error
	for try := 0; try < 40; try++ {
		if try > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
			continue
		}
		os.Stdout.Write(body)
		return
	}
	fail(last)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "yolo-echo:", err)
	os.Exit(1)
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		addr := ":8080"
		if len(args) > 1 {
			addr = args[1]
		}
		serve(addr)
	case "get":
		if len(args) < 2 {
			fail(fmt.Errorf("get URL [CA_FILE TOKEN_FILE]"))
		}
		ca, tok := "", ""
		if len(args) > 3 {
			ca, tok = args[2], args[3]
		}
		get(args[1], ca, tok)
	case "resolve":
		if len(args) < 2 {
			fail(fmt.Errorf("resolve NAME"))
		}
		var last error
		for try := 0; try < 40; try++ {
			if try > 0 {
				time.Sleep(500 * time.Millisecond)
			}
			addrs, err := net.LookupHost(args[1])
			if err == nil {
				fmt.Println(strings.Join(addrs, " "))
				return
			}
			last = err
		}
		fail(last)
	default:
		fail(fmt.Errorf("unknown command %q", args[0]))
	}
}
