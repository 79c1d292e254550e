package node

// Relists returns how many relists the daemon has run, each with the
// status reports it wrote: a test that checks that something does not
// happen waits for a few to pass rather than for a length of time.
func (d *Daemon) Relists() int64 { return d.relists.Load() }
