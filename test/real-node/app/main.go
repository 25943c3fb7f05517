// The application every pod of the real-node e2e runs (docs/e2e.md): a static binary on an otherwise
// empty image, so the tests need no registry. It behaves like a well-written service whose failure modes
// a test can trigger on demand:
//   - GET  /            answers the pod name (POD_NAME); ?delay=MS holds the answer that long, so a request
//                       can be in flight when the process dies.
//   - GET  /healthz     the readiness probe: 200 while ready, 503 after POST /readiness?ready=false.
//   - POST /readiness   ?ready=true|false flips what /healthz answers (the process keeps serving /).
//   - POST /crash       exits at once with status 3, abandoning every open connection (a crash).
// On SIGTERM it keeps serving for SHUTDOWN_DELAY (default 2s: in-flight work and late requests still
// succeed), then shuts its listener down gracefully, as services written for Kubernetes do.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	pod := os.Getenv("POD_NAME")
	port := envOr("PORT", "8080")
	shutdownDelay, err := time.ParseDuration(envOr("SHUTDOWN_DELAY", "2s"))
	if err != nil {
		log.Fatalf("SHUTDOWN_DELAY: %v", err)
	}
	var ready atomic.Bool
	ready.Store(true)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if text := r.URL.Query().Get("delay"); text != "" {
			ms, err := strconv.Atoi(text)
			if err != nil || ms < 0 || ms > 30_000 {
				http.Error(w, "delay: milliseconds from 0 to 30000", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintln(w, pod)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /readiness", func(w http.ResponseWriter, r *http.Request) {
		value, err := strconv.ParseBool(r.URL.Query().Get("ready"))
		if err != nil {
			http.Error(w, "ready=true|false", http.StatusBadRequest)
			return
		}
		ready.Store(value)
		log.Printf("readiness set to %v", value)
		fmt.Fprintln(w, value)
	})
	mux.HandleFunc("POST /crash", func(http.ResponseWriter, *http.Request) {
		log.Printf("crashing on request")
		os.Exit(3)
	})

	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		log.Printf("%v: serving %s more, then shutting down", sig, shutdownDelay)
		time.Sleep(shutdownDelay)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()
	log.Printf("%s listening on :%s", pod, port)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	log.Printf("stopped")
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
