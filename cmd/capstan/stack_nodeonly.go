//go:build nodeonly

package main

// stackFlags configure `capstan node`, the one long-running command of the
// nodeonly build (bin/capstan-node): the node's flags alone.
type stackFlags struct {
	nodeStack
}
