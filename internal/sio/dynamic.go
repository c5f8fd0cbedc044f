package sio

import (
	"encoding/json"
	"regexp"
)

// Dynamic namespaces, Node's io.of(/^\/room-\d+$/) and io.of((name, auth,
// next) => ...): a namespace nobody created with Of is created when a client
// first connects to a name a matcher accepts, and the matcher's setup
// registers its handlers before that client (or any other) gets in.

// NamespaceMatcher decides whether a client may create namespace name by
// connecting to it, given the CONNECT packet's auth payload (nil when none).
type NamespaceMatcher func(name string, auth map[string]any) bool

type dynamicNamespaces struct {
	match NamespaceMatcher
	setup func(n *Namespace)
}

// OfMatch makes the namespaces match accepts exist on demand: the first
// client to connect to one creates it, and setup runs once for it (register
// its handlers and middleware there) before any client connects. Matchers
// are tried in the order they were added. At most
// Options.MaxDynamicNamespaces are created this way; beyond, clients get
// "Invalid namespace" (LimitDynamicNamespaces). Call it before serving.
func (s *Server) OfMatch(match NamespaceMatcher, setup func(n *Namespace)) {
	s.mu.Lock()
	s.dynamic = append(s.dynamic, dynamicNamespaces{match, setup})
	s.mu.Unlock()
}

// OfPattern is OfMatch for the names re matches (Node's io.of(regexp)).
func (s *Server) OfPattern(re *regexp.Regexp, setup func(n *Namespace)) {
	s.OfMatch(func(name string, _ map[string]any) bool { return re.MatchString(name) }, setup)
}

// dynamicNamespace creates namespace name for a client connecting with auth,
// if a matcher accepts it and the cap allows; nil otherwise.
func (s *Server) dynamicNamespace(name string, auth json.RawMessage) (ns *Namespace) {
	s.mu.RLock()
	matchers := s.dynamic
	s.mu.RUnlock()
	if len(matchers) == 0 || len(name) == 0 || name[0] != '/' {
		return nil
	}
	var a map[string]any
	if len(auth) > 0 {
		_ = json.Unmarshal(auth, &a) // an auth that is not an object matches as none
	}
	var setup func(*Namespace)
	for _, d := range matchers {
		if d.match(name, a) {
			setup = d.setup
			break
		}
	}
	if setup == nil {
		return nil
	}
	s.mu.Lock()
	if _, ok := s.dynReady[name]; ok || s.nsps[name] != nil || s.creating[name] != nil {
		s.mu.Unlock() // created meanwhile (by a client or by Of)
		return s.lookup(name)
	}
	if max := s.opts.MaxDynamicNamespaces; max > 0 && len(s.dynReady) >= max {
		s.mu.Unlock()
		s.obs.Limit(LimitDynamicNamespaces)
		return nil
	}
	ready := make(chan struct{})
	s.dynReady[name] = ready
	s.mu.Unlock()
	defer close(ready) // lookup waits for it: nobody connects before setup is done
	n := s.Of(name)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str("nsp", name).Interface("panic", r).Msg("dynamic namespace setup panicked")
			ns = nil
		}
	}()
	setup(n)
	return n
}
