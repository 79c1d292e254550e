// Package workqueue is the keyed work queue every controller runs on: a
// key is queued once however often it is added, handed to one worker at a
// time, and retried with a back-off per key (client-go's workqueue is the
// model). PeakMap is the map type that gives a burst's room back.
//
// It owns: queueing, back-off, the worker loop. It does not own: what a
// key means. It imports nothing of Capstan.
package workqueue
