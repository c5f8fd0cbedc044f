package sio

// What the limits tests (package sio_test, limits_test.go) reach of the
// internals.

const (
	MaxPendingAcks   = maxPendingAcks
	MaxReplayPackets = maxReplayPackets
)

// PendingAcks is the number of acks c waits for; -1 when it keeps no ack
// state at all (none pending: nothing allocated).
func PendingAcks(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acks == nil {
		return -1
	}
	return len(c.acks.list)
}

// EmitWithAck is Conn.emitWithAck with an event encoded from v.
func EmitWithAck(c *Conn, event string, v any, onAck func(args []any)) bool {
	data, atts, err := eventData(event, v)
	if err != nil {
		panic(err)
	}
	return c.emitWithAck(data, atts, onAck)
}

// RecoveryLog is the number of packets and their bytes n's store keeps.
func RecoveryLog(n *Namespace) (packets int, bytes int64) {
	n.store.mu.Lock()
	defer n.store.mu.Unlock()
	return len(n.store.kept()), n.store.bytes
}
