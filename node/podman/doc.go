// Package podman implements node.Runtime over the REST API of a Podman
// service, with the Podman v5 Go bindings, and starts such a service when
// none is running.
//
// # Runtime
//
// New connects to a service socket and returns a Runtime, safe for
// concurrent use. One Capstan pod is one Podman pod: CreatePod creates it
// with its name, hostname, labels and published ports (held by the pod's
// infra container) and starts it, so the ports are bound before any
// container runs. Containers are created in the pod with Command as the
// entrypoint and Args as the command, and with no Podman restart policy:
// the node daemon restarts containers itself, as new containers.
//
// ListPods costs one pods.List and one containers.List call, whatever the
// number of pods; a container is inspected once, when first seen exited,
// for OOMKilled and exact start and finish times (List gives whole
// seconds), and the result is cached. HTTP 404 and 409 answers become
// node.ErrNotFound and node.ErrConflict, with Podman's error kept in the
// chain; no error is matched by its text.
//
// The Runtime needs the "remote" build tag, as the bindings do; build and
// test with
//
//	-tags "remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp"
//
// Without it the package holds only the service helpers below.
//
// # Service
//
// EnsureService returns the socket of a service that answers, starting
// "podman system service --time=0" with a containers.conf written for the
// host (HostConfig) when needed, and a function that stops it. The host
// config selects runc, cgroupfs and file events (PID 1 need not be
// systemd) and lowers the default ulimits to this process's hard limits,
// for infra containers too. No registry is needed: Podman 4.3 builds the
// infra image (localhost/podman-pause) locally from the catatonit package.
//
// This package owns no state of Capstan's: it neither chooses labels nor
// decides what runs; the node daemon does.
package podman
