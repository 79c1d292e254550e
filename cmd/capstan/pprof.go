package main

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
)

// PprofEnv names an address (such as 127.0.0.1:6060) on which any capstan
// process serves net/http/pprof's /debug/pprof/ endpoints; the benchmarks
// (docs/BENCHMARKS.md) profile the control plane and simulated nodes through
// it. Unset, nothing listens.
const PprofEnv = "CAPSTAN_PPROF"

func init() {
	addr := os.Getenv(PprofEnv)
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%s: %v\n", PprofEnv, addr, err)
		}
	}()
}
