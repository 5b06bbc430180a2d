"""Float64 naive-loop oracles, written from docs/SEMANTICS.md (DynOPool, resize_blend) alone (no grid_sample, no interpolate).

Loops run over output positions; the (N, C) axes are vectorised, which keeps the
oracle readable and fast enough for the small random shapes the tests use.
"""

from __future__ import annotations

import math

import torch


def _rnd(v: float) -> int:
    return math.floor(v + 0.5)


def dynopool_out_size(h: int, w: int, alpha, min_size: int = 2):
    return max(_rnd(h / alpha[0]), min_size), max(_rnd(w / alpha[1]), min_size)


def _border_taps(u: float, n: int):
    """Border clip, then the two bilinear taps and weights of a source coordinate."""
    u = min(max(u, 0.0), n - 1.0)
    i0 = math.floor(u)
    i1 = min(i0 + 1, n - 1)
    f = u - i0
    return i0, i1, 1.0 - f, f


def dynopool_queries(h: int, w: int, ho, wo):
    """Source coordinates of the 2·ho rows and 2·wo columns of queries (DynOPool Eq. 2; docs/SEMANTICS.md, DynOPool).

    ``ho``/``wo`` may be real-valued (the surrogate Ĥ); the number of queries is
    2·round(ho).
    """
    nh, nw = 2 * _rnd(ho), 2 * _rnd(wo)
    rows = [(((-1 + (2 * j + 1) / (2 * ho)) + 1) * h - 1) / 2 for j in range(nh)]
    cols = [(((-1 + (2 * j + 1) / (2 * wo)) + 1) * w - 1) / 2 for j in range(nw)]
    return rows, cols


def dynopool2d(x: torch.Tensor, out_size, h_hat=None, w_hat=None, grad_out=None):
    """Forward (and, with ``grad_out``, grad_x) of DynOPool in float64.

    Returns ``out`` or ``(out, grad_x)``. Ties go to the first maximum in the order
    (k,l) = (0,0),(0,1),(1,0),(1,1); NaN wins over numbers.
    """
    x = x.detach().double()
    n, c, h, w = x.shape
    ho, wo = out_size
    rows, cols = dynopool_queries(h, w, ho if h_hat is None else h_hat, wo if w_hat is None else w_hat)
    out = torch.empty(n, c, ho, wo, dtype=torch.float64)
    gx = torch.zeros_like(x) if grad_out is not None else None
    for i in range(ho):
        for j in range(wo):
            best = None
            best_idx = torch.zeros(n, c, dtype=torch.long)
            for q, (k, l) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                r0, r1, a0, a1 = _border_taps(rows[2 * i + k], h)
                c0, c1, b0, b1 = _border_taps(cols[2 * j + l], w)
                v = (
                    a0 * b0 * x[:, :, r0, c0]
                    + a0 * b1 * x[:, :, r0, c1]
                    + a1 * b0 * x[:, :, r1, c0]
                    + a1 * b1 * x[:, :, r1, c1]
                )
                if best is None:
                    best = v.clone()
                else:
                    # max_pool2d's rule: take a later query only if strictly larger, or NaN.
                    take = (v > best) | torch.isnan(v)
                    best = torch.where(take, v, best)
                    best_idx = torch.where(take, torch.full_like(best_idx, q), best_idx)
            out[:, :, i, j] = best
            if gx is not None:
                g = grad_out[:, :, i, j].double()
                for q, (k, l) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    r0, r1, a0, a1 = _border_taps(rows[2 * i + k], h)
                    c0, c1, b0, b1 = _border_taps(cols[2 * j + l], w)
                    gq = torch.where(best_idx == q, g, torch.zeros_like(g))
                    gx[:, :, r0, c0] += a0 * b0 * gq
                    gx[:, :, r0, c1] += a0 * b1 * gq
                    gx[:, :, r1, c0] += a1 * b0 * gq
                    gx[:, :, r1, c1] += a1 * b1 * gq
    return out if gx is None else (out, gx)


def _source_coords(n_in: int, n_out: int, align_corners: bool, scale):
    """F.interpolate(bilinear)'s source coordinate of each output index, in float64.

    With ``scale`` the map is that of ``interpolate(scale_factor=scale,
    recompute_scale_factor=False)`` whose full output has floor(n_in·scale) entries;
    only the first ``n_out`` (the crop) are returned.
    """
    full = n_out if scale is None else math.floor(n_in * scale)
    coords = []
    for d in range(n_out):
        if align_corners:
            src = d * (n_in - 1) / (full - 1) if full > 1 else 0.0
        else:
            ratio = 1.0 / scale if scale is not None else n_in / n_out
            src = max((d + 0.5) * ratio - 0.5, 0.0)
        coords.append(src)
    return coords


def resize(x: torch.Tensor, size, align_corners: bool, scale=None) -> torch.Tensor:
    x = x.detach().double()
    n, c, h, w = x.shape
    ho, wo = size
    if scale is None and (h, w) == (ho, wo):
        return x.clone()
    if isinstance(scale, (int, float)):
        scale = (scale, scale)
    sh, sw = (None, None) if scale is None else scale
    rows = _source_coords(h, ho, align_corners, sh)
    cols = _source_coords(w, wo, align_corners, sw)
    out = torch.empty(n, c, ho, wo, dtype=torch.float64)
    for i, u in enumerate(rows):
        r0 = min(math.floor(u), h - 1)
        r1 = min(r0 + 1, h - 1)
        a1 = u - r0
        for j, v in enumerate(cols):
            c0 = min(math.floor(v), w - 1)
            c1 = min(c0 + 1, w - 1)
            b1 = v - c0
            out[:, :, i, j] = (
                (1 - a1) * (1 - b1) * x[:, :, r0, c0]
                + (1 - a1) * b1 * x[:, :, r0, c1]
                + a1 * (1 - b1) * x[:, :, r1, c0]
                + a1 * b1 * x[:, :, r1, c1]
            )
    return out


def resize_blend(x1, x2, w1, w2, size, align_corners=True, scales=None):
    s1, s2 = (None, None) if scales is None else scales
    return float(w1) * resize(x1, size, align_corners, s1) + float(w2) * resize(x2, size, align_corners, s2)
