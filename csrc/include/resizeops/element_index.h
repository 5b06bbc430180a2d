// Linear index <-> (n, c, h, w) of the per-element code of the CUDA
// kernels, shared by resizeops/dynopool_elements.h and resizeops/blend_elements.h.
// Host and device (RESIZEOPS_HD); free of torch includes.
#pragma once

#include <cstdint>

#include "resizeops/math.h"  // RESIZEOPS_HD

namespace resizeops {

// The strides of a 4-D tensor (elements) in the index type of a launch.
template <typename index_t>
struct Strides4 {
  index_t n, c, h, w;
};

namespace elements {

// ---------------------------------------------------------------------------
// Linear index <-> (n, c, h, w), in a tensor's memory order
// ---------------------------------------------------------------------------

// Position of element `linear` of an (N, C, H, W) tensor enumerated in memory
// order: NCHW (w fastest) or channels_last (c fastest). Thread t handles
// element t, so that stores to the contiguous output are coalesced.
template <typename index_t>
struct Pos {
  index_t n, c, h, w;
};

template <typename index_t>
RESIZEOPS_HD Pos<index_t> unravel(index_t linear, index_t C, index_t H, index_t W, bool channels_last) {
  Pos<index_t> p;
  if (channels_last) {
    p.c = linear % C;
    index_t t = linear / C;
    p.w = t % W;
    t /= W;
    p.h = t % H;
    p.n = t / H;
  } else {
    p.w = linear % W;
    index_t t = linear / W;
    p.h = t % H;
    t /= H;
    p.c = t % C;
    p.n = t / C;
  }
  return p;
}


}  // namespace elements
}  // namespace resizeops
