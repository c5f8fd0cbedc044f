//go:build !ownengine

package sio

// localSide is the namespace's local sockets, as the cluster reaches them
// (used by requests.go).
func (n *Namespace) localSide() Local {
	return &local{br: n.bridge()}
}

// clusterLink is the namespace's link to the other nodes; nil on one node.
func (n *Namespace) clusterLink() Link {
	if b := n.bridge(); b.link != nil {
		return b.link
	}
	return nil
}

// bridge is the engine adapter of the namespace: always ours (bridgeBuilder).
func (n *Namespace) bridge() *bridge {
	return n.nsp.Adapter().(*bridge)
}
