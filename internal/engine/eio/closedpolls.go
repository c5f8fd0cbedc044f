package eio

import (
	"net/http"
	"time"
)

// A polling client that closes its session sends the close packet in a POST
// while its last GET is normally pending, and that GET is answered noop. Go
// serves the two requests concurrently, so the GET the client sent first can
// arrive second and would find the session gone ("Session ID unknown"); Node,
// serving them in arrival order, answers noop. closedPolls remembers, for
// closedPollLinger, the sessions whose clients closed them with no GET
// pending, so that one late GET is answered as if it had been pending; the
// next one gets the 400.
const (
	closedPollLinger = time.Second
	maxClosedPolls   = 4096 // beyond (a burst of closes), a late GET gets the 400
)

type closedPolls struct {
	ids map[string]time.Time // sid -> until
}

// add remembers sid until now+closedPollLinger; srv.mu must be held.
func (c *closedPolls) add(sid string, now time.Time) {
	if c.ids == nil {
		c.ids = map[string]time.Time{}
	}
	if len(c.ids) >= maxClosedPolls {
		for id, until := range c.ids {
			if now.After(until) {
				delete(c.ids, id)
			}
		}
		if len(c.ids) >= maxClosedPolls {
			return
		}
	}
	c.ids[sid] = now.Add(closedPollLinger)
}

// take reports whether sid was closed by its polling client a moment ago,
// and forgets it; srv.mu must be held.
func (c *closedPolls) take(sid string, now time.Time) bool {
	until, ok := c.ids[sid]
	delete(c.ids, sid)
	return ok && now.Before(until)
}

// answerClosedPoll answers a GET of a session its polling client just
// closed with a noop, as Node answers the poll that was pending; false if sid
// is not one.
func (srv *Server) answerClosedPoll(w http.ResponseWriter, r *http.Request, sid string) bool {
	if r.Method != http.MethodGet {
		return false
	}
	srv.mu.Lock()
	ok := srv.closedPolls.take(sid, time.Now())
	srv.mu.Unlock()
	if !ok {
		return false
	}
	_ = writePayload(w, []*Message{noopPacket})
	return true
}
