package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain keeps every test's client config out of the user's own
// (~/.config/capstan/config): a test that sets none gets a scratch one.
func TestMain(m *testing.M) {
	if os.Getenv("CAPSTAN_CONFIG") == "" {
		dir, err := os.MkdirTemp("", "capstan-test-config")
		if err != nil {
			panic(err)
		}
		os.Setenv("CAPSTAN_CONFIG", filepath.Join(dir, "config"))
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}
