package sio

import "github.com/switchboard/switchboard/internal/engine/eio"

// Refusal refuses a new session from Options.Admit or AllowRequest with a
// status (default 403), a Retry-After and the limit's name.
type Refusal = eio.Refusal

// Names of the limits a client can hit, as reported to Observer.Limit (the
// engine's are passed through unchanged).
const (
	LimitPending           = "handshake_pending_limit" // MAX_PENDING_SESSIONS: handshake refused
	LimitIPSessions        = "handshake_ip_limit"      // MAX_CONNECTIONS_PER_IP: handshake refused
	LimitIPRate            = "handshake_ip_rate"       // HANDSHAKE_RATE_PER_IP: handshake refused
	LimitIPConns           = "tcp_ip_limit"            // 2 x MAX_CONNECTIONS_PER_IP TCP connections: connection refused
	LimitOrigin            = eio.LimitOrigin           // Origin not allowed: handshake or upgrade refused
	LimitCooldown          = "handshake_cooldown"      // RATE_KICK_COOLDOWN: connect refused
	LimitSessionIP         = eio.LimitSessionIP        // SESSION_BIND_IP: request for a sid from another IP
	LimitHandshakeTime     = "handshake_timeout"       // HANDSHAKE_TIMEOUT: session closed, no namespace joined
	LimitSlowConsumer      = "slow_consumer"           // MAX_BUFFERED_BYTES / WRITE_TIMEOUT: client cut off
	LimitInboundPaused     = "inbound_paused"          // MAX_INBOUND_BYTES: reader paused for backpressure
	LimitRecoveryEvict     = "recovery_eviction"       // RECOVERY_MAX_BYTES: packet evicted from the log
	LimitAckExpired        = "ack_expired"             // ACK_TIMEOUT: a server-emitted ack never answered
	LimitDedupeEviction    = "dedupe_eviction"         // DEDUPE_MAX_ENTRIES: clientId forgotten early
	LimitDynamicNamespaces = "dynamic_namespace_limit" // MAX_DYNAMIC_NAMESPACES: connect to a new dynamic namespace refused
	LimitAdminQueue        = "admin_queue"             // ADMIN_UI_QUEUE: a socket event for the Admin UI dropped
)
