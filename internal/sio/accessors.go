package sio

// localSide is the namespace's local sockets, as the cluster reaches them
// (used by requests.go).
func (n *Namespace) localSide() Local { return (*ownLocal)(n) }

// clusterLink is the namespace's link to the other nodes; nil on one node.
func (n *Namespace) clusterLink() Link { return n.link }
