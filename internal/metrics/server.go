package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"golang.org/x/net/netutil"
)

// ServerOptions configure the listener of --metrics-listen.
type ServerOptions struct {
	// Ready are the conditions /readyz checks, in the order its answer
	// lists the failing ones.
	Ready []ReadyCheck
	// Pprof also serves Go's profiler at /debug/pprof/.
	Pprof  bool
	Logger *slog.Logger
}

// Bounds of the listener: a scrape is one small request, so a few
// connections at once and short timeouts suffice; the write timeout leaves
// room for pprof's default 30-second CPU profile.
const (
	maxServerConns    = 16
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = time.Minute
	maxHeaderBytes    = 8 << 10
)

// Server serves /metrics, /healthz, /readyz and, with Pprof,
// /debug/pprof/ on its own HTTP listener, apart from the SSH front door.
type Server struct {
	srv *http.Server
	log *slog.Logger
}

// NewServer builds the listener's server; Serve starts it.
func (r *Registry) NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("component", "metrics")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", readyHandler(opts.Ready))
	if opts.Pprof {
		// On this mux only: http.DefaultServeMux, which importing
		// net/http/pprof also fills, is never served.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &Server{
		log: log,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
}

// readyHandler answers 200 "ready" when every check passes, else 503 with
// one line per failing check.
func readyHandler(checks []ReadyCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var failing []string
		for _, check := range checks {
			if err := check(); err != nil {
				failing = append(failing, strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failing, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// Serve serves on l, at most maxServerConns connections at once, until
// Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(netutil.LimitListener(l, maxServerConns))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("metrics listener: %w", err)
}

// Shutdown stops the listener, letting requests in flight finish until ctx
// ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.log.Info("metrics listener: closing requests still open", "err", err)
		s.srv.Close()
	}
}
