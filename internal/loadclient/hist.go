package loadclient

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Hist is a log-linear histogram of non-negative values (microseconds, say)
// with 32 sub-buckets per power of two (relative error under 3.2 %). Record
// is lock-free; histograms merge by adding counts.
type Hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Uint64
}

const (
	histSub     = 5 // log2 of sub-buckets per power of two
	histBuckets = (64 - histSub + 1) << histSub
)

func histIndex(v uint64) int {
	if v < 1<<histSub {
		return int(v)
	}
	p := bits.Len64(v) - histSub - 1 // shift that leaves histSub+1 significant bits
	m := v >> uint(p)                // in [32, 64)
	return (p+1)<<histSub + int(m-(1<<histSub))
}

// histValue is the midpoint of bucket i.
func histValue(i int) float64 {
	if i < 1<<histSub {
		return float64(i)
	}
	p := i>>histSub - 1
	m := uint64(i&(1<<histSub-1)) + 1<<histSub
	lo := float64(m << uint(p))
	return lo + float64(uint64(1)<<uint(p))/2 - 0.5
}

// Record adds one value.
func (h *Hist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	h.counts[histIndex(u)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if u <= m || h.max.CompareAndSwap(m, u) {
			break
		}
	}
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Quantile returns the value at quantile q (0..1), 0 when empty.
func (h *Hist) Quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return float64(h.max.Load())
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			v := histValue(i)
			if mx := float64(h.max.Load()); v > mx {
				v = mx
			}
			return v
		}
	}
	return float64(h.max.Load())
}

// Sparse is a histogram's serialisable form: bucket index -> count.
type Sparse struct {
	Counts map[int]uint64 `json:"counts"`
	Max    uint64         `json:"max"`
}

// Export returns the non-empty buckets.
func (h *Hist) Export() Sparse {
	s := Sparse{Counts: map[int]uint64{}, Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Counts[i] = c
		}
	}
	return s
}

// Merge adds an exported histogram into h.
func (h *Hist) Merge(s Sparse) {
	for i, c := range s.Counts {
		if i >= 0 && i < histBuckets {
			h.counts[i].Add(c)
			h.n.Add(c)
		}
	}
	for {
		m := h.max.Load()
		if s.Max <= m || h.max.CompareAndSwap(m, s.Max) {
			break
		}
	}
}

// Summary is what results show of a histogram, in milliseconds.
type Summary struct {
	N    uint64  `json:"n"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// SummaryMs summarises a histogram of microseconds in milliseconds.
func (h *Hist) SummaryMs() Summary {
	ms := func(v float64) float64 { return math.Round(v) / 1000 }
	return Summary{
		N:    h.Count(),
		P50:  ms(h.Quantile(0.50)),
		P90:  ms(h.Quantile(0.90)),
		P99:  ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)),
		Max:  ms(h.Quantile(1)),
	}
}
