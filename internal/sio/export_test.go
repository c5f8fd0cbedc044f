package sio

// SetInboundHook makes fn see the input bytes a client holds each time it takes more (nil
// removes it).
func SetInboundHook(fn func(held int)) {
	if fn == nil {
		inboundHook.Store(nil)
		return
	}
	inboundHook.Store(&fn)
}

// InboundOverhead is what each message counts against MaxInbound besides its bytes.
const InboundOverhead = inboundOverhead
