// Package acceptguard wraps a net.Listener so that an accept loop survives
// running out of file descriptors without spinning and without leaving
// clients hanging.
//
// When accept(2) fails with EMFILE or ENFILE the kernel keeps the pending
// connection in the listen queue, so the listener stays readable and a naive
// loop retries at full speed while the client waits forever. The guard keeps
// one descriptor in reserve (opened on os.DevNull when the listener is
// wrapped). On EMFILE/ENFILE it closes the reserve, accepts the pending
// connection with the freed descriptor and, if the process still has no
// descriptor to spare, closes that connection at once (the client sees a
// close, not a hang) and reopens the reserve. If a descriptor is free again
// by then, the accepted connection is returned and served normally.
//
// Other temporary errors (ECONNABORTED, ENOBUFS, ENOMEM, net.Error values
// that report Temporary) are retried after a sleep that starts at 5 ms and
// doubles up to 1 s, as net/http's own accept loop does. Accept never returns
// a temporary error: only a permanent one (the listener closed), so that
// every failure is counted here.
//
// Every failed accept calls Options.Count; Options.Log is called at most
// once per Options.LogEvery (default 1 s). Both are plain functions so the
// package stays independent of any metrics or logging library.
package acceptguard
