// Package fake is an in-memory node.Runtime for unit tests and simulated
// nodes.
//
// A Runtime holds pods and containers in memory and runs no process. A
// started container "runs" until it is stopped, removed, or told to exit by
// the test with Exit or OOMKill. So that the shared contract suite
// (node/runtimetest) can run against it, the fake interprets a tiny subset
// of shell in the container's command line (Command followed by Args):
//
//   - "sh -c SCRIPT" runs the statements of SCRIPT, separated by ";" or
//     newlines, at start;
//   - "echo WORDS" writes a line to stdout, or to stderr when it ends with
//     ">&2"; "$NAME" and "${NAME}" expand from the container's Env;
//   - "pwd" writes the working directory (default "/");
//   - "exit N" ends the container with exit code N;
//   - "sleep ..." and any other command keep the container running.
//
// A script whose statements all complete (only echo and pwd) exits with
// code 0, as a shell would. A command line that is not "sh -c" or "echo"
// keeps running, whatever it is.
//
// Images must be added with AddImage before containers can use them, so
// tests see the same ErrNotFound a real engine gives for a missing image;
// Options.AnyImage (simulated nodes) makes every image present.
//
// The zero value is not usable; create a Runtime with New. Every method is
// safe for concurrent use.
package fake
