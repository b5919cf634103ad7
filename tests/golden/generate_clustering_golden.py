#!/usr/bin/env python3
"""Generate tests/golden/clustering_golden.pt, the golden values for Tandem's clustering code.

This script is an independent reference for the clustering and evaluation steps in the MMT
reference notes (mmt_reference_notes.md, section 6). Every algorithm here comes from the facts
in those notes. No MMT, TLlib or OpenUnReID code is used or copied. The groups are:

  jaccard       6.3  MMT compute_jaccard_dist (target only, lambda = 0), dense algorithm
  adaptive_eps  6.4  MMT's top-rho eps rule on the Jaccard matrix
  dbscan        6.4  scikit-learn DBSCAN(metric='precomputed') on the Jaccard matrix or a
                     hand-made distance matrix
  rerank        6.2  k-reciprocal re-ranking for evaluation (Zhong et al., CVPR 2017)
  evaluate      6.1  Market-1501 protocol: sklearn average_precision_score mAP and CMC

The references are computed in float64 from float32 inputs. Gram matrices use math.fsum, so every
dot product is correctly rounded: the diagonal and duplicate rows give exact zeros, and mirrored
points give exact ties. Argsorts are STABLE, so ties go to the lower index. For round(k1/2), the
script uses Python's round(), which rounds half to even, as np.around does in the originals:
round(5/2) = 2 and round(15/2) = 8. Inputs are drawn from fixed seeds. Exact ties (duplicate
rows, mirrored points) are added one at a time and kept only if no tied or nearly tied group
crosses a rank boundary that matters (k2, round(k1/2)+1, k1+1). A base draw that has such a group
is redrawn with the next seed. So the golden values do not depend on how ties are ordered.

The self-checks are asserts:
  * Jaccard and re-ranking are also computed in float32 as the originals do: float32 torch or
    numpy, an independent loop-and-set k-reciprocal expansion, and the inverted-index Jaccard
    loop. They must agree with the float64 dense path to 1e-6, with the same rank-boundary sets.
  * Jaccard values are in [0, 1] with a zero diagonal. Values below 1e-12 are float64 noise
    around an exact 0 (identical V rows) and are stored as 0. No value may lie in [1e-12, 1e-6).
  * For every DBSCAN case on features, the labels must not change when any entry within 1e-5
    of eps falls on the other side (every in/out combination is tried), so float32 noise in a
    port cannot flip them.
  * scikit-learn's DBSCAN labels are checked against a plain DBSCAN written from the notes.
  * A step AP written here must match sklearn's average_precision_score on every query.
  * Two tiny AP cases are checked against hand-computed values.

Regenerate from the repository root with the project's venv (created by scripts/setup, or
$TANDEM_VENV; torch, numpy and scikit-learn are pinned in scripts/python-requirements.txt):

    .venv/bin/python tests/golden/generate_clustering_golden.py

Optional argument: the output path (default: clustering_golden.pt next to this script). Two runs
write byte-identical files when the output path is the same. The schema is in
tests/golden/README.md.
"""

import math
import os
import sys

import numpy as np
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import average_precision_score

F32 = np.float32
F64 = np.float64

# Minimum gap between the values on either side of a rank boundary that matters. Anything
# closer counts as a tie that a float32 port could order differently. Jaccard: the normalised
# 2 - 2 f.g carries about 1e-7 absolute float32 error, so the gap must be > 2e-6 (absolute).
# Re-ranking: d^4 / max is small for neighbours and its float32 error is relative (about 1e-6),
# so the gap must be > 2e-5 * value (+1e-10).
JACCARD_GAP = (2e-6, 0.0)
RERANK_GAP = (1e-10, 2e-5)
# After the float64 Jaccard, values below this are rounding noise around an exact 0
# (identical V rows); they are stored as 0.0.
ZERO_SNAP = 1e-12
# Genuine non-zero Jaccard values must be well separated from 0.
MIN_NONZERO = 1e-6
# Entries within this distance of eps are "uncertain": a float32 port may put them on either
# side, and the DBSCAN labels must not depend on it (labels_robust).
EPS_MARGIN = 1e-5
TINY = 1e-7  # the "zero pairs counted as tiny positives" variant of the eps rule
LOG = []


def log(msg):
    LOG.append(msg)
    print(msg)


# --------------------------------------------------------------------------------------
# Exact helpers
# --------------------------------------------------------------------------------------

def exact_gram(x32):
    """Gram matrix of float32 rows in float64. Each entry is the correctly rounded exact dot product.

    Products of two float32 values are exact in float64, and math.fsum rounds their exact sum
    once. The result is symmetric, duplicate rows give identical entries, and the diagonal equals
    the squared norms bit for bit.
    """
    x = np.asarray(x32, dtype=F32).astype(F64)
    n = x.shape[0]
    g = np.empty((n, n), dtype=F64)
    for i in range(n):
        prods = x[i][None, :] * x[i:]          # exact products
        for j in range(i, n):
            v = math.fsum(prods[j - i])
            g[i, j] = v
            g[j, i] = v
    return g


def stable_argsort_rows(m):
    return np.argsort(m, axis=1, kind="stable")


def half_k(k1):
    """round(k1/2) as the originals compute it (np.around / Python round: half to even).

    round(5/2) = 2, round(9/2) = 4, round(15/2) = 8, round(20/2) = 10, round(30/2) = 15."""
    return int(round(k1 / 2))


def boundary_positions(k1, k2, n):
    pos = {half_k(k1) + 1, k1 + 1}
    if k2 != 1:
        pos.add(k2)
    return sorted(p for p in pos if 0 < p < n)


def tie_straddles(dist_rows, positions, min_gap):
    """Rows where a tied or nearly tied group crosses one of the rank boundaries.

    Position p means the set initial_rank[i, :p]. The set is well defined only if
    sorted[p-1] < sorted[p] by a margin.
    """
    s = np.sort(dist_rows, axis=1)
    bad = []
    for p in positions:
        gap = s[:, p] - s[:, p - 1]
        tol = min_gap[0] + min_gap[1] * np.abs(s[:, p])
        for i in np.flatnonzero(~(gap > tol)):
            bad.append((int(i), p, float(gap[i])))
    return bad


# --------------------------------------------------------------------------------------
# Jaccard distance (notes 6.3), float64 dense reference
# --------------------------------------------------------------------------------------

def mmt_original_distance64(f32):
    """original[i,j] = 2|f_i|^2 - 2 f_i.f_j, each column divided by its max, then transposed."""
    g = exact_gram(f32)
    sq = np.diag(g).copy()
    old = 2.0 * sq[:, None] - 2.0 * g
    old = old / old.max(axis=0)[None, :]
    return np.ascontiguousarray(old.T)


def k_reciprocal(rank, i, k):
    """Forward neighbours rank[i, :k+1] (self usually included) that have i in their own first k+1."""
    fwd = rank[i, :k + 1]
    back = rank[fwd, :k + 1]
    keep = (back == i).any(axis=1)
    return fwd[keep]


def expanded_sets(rank, k1, kh=None):
    """The k-reciprocal expansion of notes 6.2/6.3: R(i,k1) plus qualifying R(c, round(k1/2)).

    kh overrides round(k1/2). It is used only to show that the rounding choice changes the output."""
    n = rank.shape[0]
    kh = half_k(k1) if kh is None else kh
    r_full = [k_reciprocal(rank, i, k1) for i in range(n)]
    r_half = [k_reciprocal(rank, i, kh) for i in range(n)]
    out = []
    for i in range(n):
        r = r_full[i]
        parts = [r]
        for c in r:
            cand = r_half[c]
            inter = np.intersect1d(cand, r)  # unique elements
            if len(inter) > 2.0 / 3.0 * len(cand):
                parts.append(cand)
        out.append(np.unique(np.concatenate(parts)))
    return out


def expanded_sets_loops(rank, k1):
    """The same expansion written with plain Python sets and loops, independently of
    expanded_sets. The float32 paths use it, so the two paths cross-check each other."""
    n = rank.shape[0]
    kh = int(round(k1 / 2))

    def recip(i, k):
        fwd = [int(c) for c in rank[i][:k + 1]]
        return [c for c in fwd if i in set(int(x) for x in rank[c][:k + 1])]

    out = []
    for i in range(n):
        r = recip(i, k1)
        r_set = set(r)
        expanded = set(r)
        for c in r:
            cand = recip(c, kh)
            if 3 * len(set(cand) & r_set) > 2 * len(cand):   # |∩| > 2/3 |cand|, in integers
                expanded.update(cand)
        out.append(np.array(sorted(expanded), dtype=np.int64))
    return out


def v_matrix64(dist, rank, k1, k2, kh=None):
    n = dist.shape[0]
    v = np.zeros((n, n), dtype=F64)
    for i, idx in enumerate(expanded_sets(rank, k1, kh)):
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = v[rank[:, :k2]].sum(axis=1) / k2
    return v


def jaccard_from_v64(v_rows, v_all):
    """s[i,j] = sum_k min(V[i,k], V[j,k]) (zero unless both are non-zero); 1 - s/(2-s)."""
    s = np.minimum(v_rows[:, None, :], v_all[None, :, :]).sum(axis=2)
    return 1.0 - s / (2.0 - s)


def jaccard64(f32, k1, k2, kh=None):
    dist = mmt_original_distance64(f32)
    rank = stable_argsort_rows(dist)
    v = v_matrix64(dist, rank, k1, k2, kh)
    jac = jaccard_from_v64(v, v)
    jac[jac < 0] = 0.0
    # Exact zeros occur where V rows are mathematically identical (duplicate rows, or points
    # sharing the same k2-nearest set). Rounding leaves about 1e-16 there; snap it to 0.
    small = jac < ZERO_SNAP
    assert not np.any((jac >= ZERO_SNAP) & (jac < MIN_NONZERO)), "Jaccard value too close to 0"
    jac[small] = 0.0
    return jac, dist, rank


# --------------------------------------------------------------------------------------
# Jaccard distance, float32 "as the original does" (torch float32, inverted-index loop)
# --------------------------------------------------------------------------------------

def jaccard32_original(f32, k1, k2):
    f = torch.from_numpy(np.asarray(f32, dtype=F32))
    n = f.shape[0]
    d = (f.pow(2).sum(dim=1, keepdim=True) * 2).expand(n, n) - 2 * (f @ f.t())
    d = d / d.max(dim=0)[0]
    d = d.t().contiguous()
    rank = torch.sort(d, dim=1, stable=True)[1].numpy()
    dn = d.numpy()
    sets = expanded_sets_loops(rank, k1)
    v = np.zeros((n, n), dtype=F32)
    for i, idx in enumerate(sets):
        w = np.exp(-dn[i, idx])
        v[i, idx] = w / np.sum(w)
    if k2 != 1:
        v = (v[rank[:, :k2]].sum(axis=1) / F32(k2)).astype(F32)
    jac = _inverted_index_jaccard32(v, n)
    jac[jac < 0] = 0.0
    return jac, rank


def _inverted_index_jaccard32(v, num_rows):
    n_cols = v.shape[1]
    inv = [np.flatnonzero(v[:, k] != 0) for k in range(n_cols)]
    out = np.zeros((num_rows, v.shape[0]), dtype=F32)
    for i in range(num_rows):
        temp = np.zeros(v.shape[0], dtype=F32)
        for k in np.flatnonzero(v[i] != 0):
            rows = inv[k]
            temp[rows] = temp[rows] + np.minimum(v[i, k], v[rows, k])
        out[i] = F32(1) - temp / (F32(2) - temp)
    return out


# --------------------------------------------------------------------------------------
# Re-ranking for evaluation (notes 6.2)
# --------------------------------------------------------------------------------------

def rerank_original_distance64(q32, g32):
    x = np.concatenate([q32, g32], axis=0).astype(F32)
    gm = exact_gram(x)
    sq = np.diag(gm).copy()
    d2 = sq[:, None] + sq[None, :] - 2.0 * gm      # [[q_q, q_g], [q_g^T, g_g]], squared Euclidean
    d4 = np.power(d2, 2)
    d4 = d4 / d4.max(axis=0)[None, :]
    return np.ascontiguousarray(d4.T)


def rerank64(q32, g32, k1, k2, lam):
    q = q32.shape[0]
    dist = rerank_original_distance64(q32, g32)
    rank = stable_argsort_rows(dist)
    n = dist.shape[0]
    v = np.zeros((n, n), dtype=F64)
    for i, idx in enumerate(expanded_sets(rank, k1)):
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = v[rank[:, :k2]].mean(axis=1)
    jac = jaccard_from_v64(v[:q], v)
    final = jac * (1.0 - lam) + dist[:q] * lam
    return final[:, q:], dist, rank


def rerank32_original(q32, g32, k1, k2, lam):
    qt = torch.from_numpy(q32)
    gt = torch.from_numpy(g32)

    def sqdist(a, b):
        return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1, keepdim=True).t() - 2 * a @ b.t()).numpy()

    q_g, q_q, g_g = sqdist(qt, gt), sqdist(qt, qt), sqdist(gt, gt)
    q = q_g.shape[0]
    full = np.concatenate([np.concatenate([q_q, q_g], axis=1),
                           np.concatenate([q_g.T, g_g], axis=1)], axis=0)
    full = np.power(full, 2).astype(F32)
    full = np.transpose(F32(1.0) * full / np.max(full, axis=0)).astype(F32)
    rank = np.argsort(full, axis=1, kind="stable")
    n = full.shape[0]
    v = np.zeros((n, n), dtype=F32)
    for i, idx in enumerate(expanded_sets_loops(rank, k1)):
        w = np.exp(-full[i, idx])
        v[i, idx] = w / np.sum(w)
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = np.mean(v[rank[i, :k2], :], axis=0)
        v = v_qe
    jac = _inverted_index_jaccard32(v, q)
    final = jac * F32(1 - lam) + full[:q] * F32(lam)
    return final[:, q:], rank


# --------------------------------------------------------------------------------------
# Eps rule and DBSCAN (notes 6.4)
# --------------------------------------------------------------------------------------

def adaptive_eps(d, rho, zero_as_tiny=False):
    n = d.shape[0]
    iu = np.triu_indices(n, 1)
    upper = d[iu]
    if zero_as_tiny:
        vals = np.where(upper == 0.0, TINY, upper)
    else:
        vals = upper[upper != 0.0]
    tri = np.sort(vals)
    top = int(round(rho * tri.size))
    assert top >= 1, "top = 0 would give eps = mean([]) = nan"
    return float(np.mean(tri[:top])), top, int(tri.size)


def my_dbscan(d, eps, min_samples):
    """A plain DBSCAN from notes 6.4. Neighbourhoods are rows {j : D[i,j] <= eps} with self included.
    A point is core if its neighbourhood has at least min_samples points. Clusters are seeded in index
    order and grown by a stack-based DFS. A border point keeps the first cluster that reaches it."""
    n = d.shape[0]
    neigh = [np.flatnonzero(d[i] <= eps) for i in range(n)]
    core = [len(nb) >= min_samples for nb in neigh]
    labels = [-1] * n
    label = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        stack = [i]
        while stack:
            p = stack.pop()
            if labels[p] != -1:
                continue
            labels[p] = label
            if core[p]:
                stack.extend(int(v) for v in neigh[p] if labels[v] == -1)
        label += 1
    return np.asarray(labels, dtype=np.int64)


def dbscan_labels(d, eps, min_samples):
    ref = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(d).astype(np.int64)
    mine = my_dbscan(d, eps, min_samples)
    assert np.array_equal(ref, mine), "sklearn DBSCAN and own DBSCAN disagree"
    return ref


def uncertain_pairs(d, eps):
    """Off-diagonal entries a float32 port could put on the other side of eps: within
    EPS_MARGIN of it. Exact 0 is always inside (eps > EPS_MARGIN is required). Exact 1.0 (no
    shared support, exact in any precision) is certain when eps >= 1."""
    assert eps > EPS_MARGIN
    n = d.shape[0]
    close = (np.abs(d - eps) <= EPS_MARGIN) & ~np.eye(n, dtype=bool) & (d != 0.0)
    if eps >= 1.0:
        close &= d != 1.0
    return [tuple(map(int, ij)) for ij in np.argwhere(close)]


def labels_robust(d, eps, min_samples, max_uncertain=8):
    """True if DBSCAN labels do not depend on which side of eps the uncertain entries fall.
    Every in/out combination is tried."""
    pairs = uncertain_pairs(d, eps)
    if not pairs:
        return True
    if len(pairs) > max_uncertain:
        return False
    base = my_dbscan(d, eps, min_samples)
    for mask in range(2 ** len(pairs)):
        dd = d.copy()
        for b, (i, j) in enumerate(pairs):
            dd[i, j] = eps if (mask >> b) & 1 else eps + 1.0   # inside (inclusive) / outside
        if not np.array_equal(my_dbscan(dd, eps, min_samples), base):
            return False
    return True


# DBSCAN cases on Jaccard matrices: (jaccard case, name suffix, eps or None for the adaptive
# rho = 1.6e-3 eps, min_samples).
DBSCAN_SPECS = [
    ("mmt_k1_20_k2_6_n200", "adaptive_min4", None, 4),
    ("mmt_k1_20_k2_6_n200", "fixed_0.7_min4", 0.7, 4),
    ("mmt_k1_20_k2_6_n200", "adaptive_min2", None, 2),
    ("small_k1_5_k2_1_n120", "tiny_eps_no_clusters", 1e-3, 4),
    ("mmt_k1_20_k2_6_n200", "eps_1_one_cluster", 1.0, 4),
    ("tllib_k1_30_k2_6_n160", "fixed_0.7_min4", 0.7, 4),
    ("tllib_k1_30_k2_6_n160", "adaptive_min4", None, 4),
    ("small_k1_5_k2_2_n60", "adaptive_min1", None, 1),
    ("small_k1_5_k2_2_n60", "fixed_0.7_min2", 0.7, 2),
    ("small_k1_5_k2_1_n120", "fixed_0.7_min4", 0.7, 4),
]


def dbscan_eps_list(jac, case_name):
    """(eps, min_samples) pairs used on this Jaccard matrix: the jaccard case's own
    dbscan_labels (adaptive eps, 4) and the DBSCAN_SPECS entries for it."""
    adaptive = adaptive_eps(jac, 1.6e-3)[0]
    out = [(adaptive, 4)]
    for src, _suffix, eps, ms in DBSCAN_SPECS:
        if src == case_name:
            out.append((adaptive if eps is None else eps, ms))
    return out


def jaccard_case_accept(name, k1, k2):
    """All eps / min_samples a DBSCAN case uses on these features must give labels that float32
    noise cannot change."""
    def accept(f):
        jac = jaccard64(f, k1, k2)[0]
        return all(labels_robust(jac, e, ms) for e, ms in dbscan_eps_list(jac, name))
    return accept


# --------------------------------------------------------------------------------------
# Evaluation (notes 6.1)
# --------------------------------------------------------------------------------------

def own_step_ap(y_true, score):
    """Non-interpolated AP over distinct score thresholds (ties are grouped)."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(score, dtype=F64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    total_pos = y.sum()
    ap, tp, fp, prev_recall, i = 0.0, 0, 0, 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        tp += int(y[i:j].sum())
        fp += int((~y[i:j]).sum())
        recall = tp / total_pos
        ap += (recall - prev_recall) * (tp / (tp + fp))
        prev_recall = recall
        i = j
    return ap


def evaluate(dist32, qids, qcams, gids, gcams, topk=100):
    dist = dist32.astype(F64)   # exact: ties stay ties
    aps, ret, kept = [], np.zeros(topk, dtype=F64), 0
    for i in range(dist.shape[0]):
        valid = ~((gids == qids[i]) & (gcams == qcams[i]))
        matches = (gids == qids[i])[valid]
        if not matches.any():
            continue
        score = -dist[i][valid]
        ap = float(average_precision_score(matches, score))
        mine = own_step_ap(matches, score)
        assert abs(ap - mine) < 1e-12, (i, ap, mine)
        aps.append(ap)
        order = np.argsort(dist[i][valid], kind="stable")
        k = int(np.flatnonzero(matches[order])[0])
        if k < topk:
            ret[k] += 1
        kept += 1
    assert kept > 0
    return float(np.mean(aps)), np.cumsum(ret) / kept, kept


# --------------------------------------------------------------------------------------
# Input generation
# --------------------------------------------------------------------------------------

def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def to_f32_unit(x64):
    return unit_rows(np.asarray(x64, dtype=F64)).astype(F32)


def blob_points(rng, n, d, n_outliers, size_range=(2, 30), sigma_range=(0.25, 0.7)):
    """Gaussian blobs of different sizes around random unit centres, plus a few outliers. The blob
    sizes sum to n - n_outliers. Returns float64 unit rows and a blob id (-1 for outliers)."""
    n_blob = n - n_outliers
    sizes = []
    while sum(sizes) < n_blob:
        sizes.append(int(rng.integers(size_range[0], size_range[1] + 1)))
    sizes[-1] -= sum(sizes) - n_blob
    if sizes[-1] < 2:
        last = sizes.pop()
        sizes[-1] += last
    pts, ids = [], []
    for b, sz in enumerate(sizes):
        centre = unit_rows(rng.standard_normal((1, d)))[0]
        sigma = rng.uniform(*sigma_range)
        pts.append(centre + sigma * rng.standard_normal((sz, d)) / math.sqrt(d))
        ids += [b] * sz
    if n_outliers:
        pts.append(rng.standard_normal((n_outliers, d)))
        ids += [-1] * n_outliers
    x = unit_rows(np.concatenate(pts, axis=0))
    ids = np.asarray(ids)
    perm = rng.permutation(n)
    return x[perm], ids[perm]


def jaccard_ties_ok(f32, k1, k2):
    dist = mmt_original_distance64(f32)
    return not tie_straddles(dist, boundary_positions(k1, k2, dist.shape[0]), JACCARD_GAP)


def add_exact_ties(rng, f32, n_dups, dup_max, n_mirrors, ok):
    """Add exact ties. Each duplicate group is 2 or 3 identical rows, inserted at random positions.
    Each "mirror" sets coordinates 0 and 1 of a pivot row p equal and adds a copy of one of p's
    neighbours a with coordinates 0 and 1 swapped, which ties a in row p exactly. A tie is kept only
    if ok(features) still holds: no tie group crosses a rank boundary. Otherwise another candidate
    is tried."""
    f = f32.copy()
    dups_done = mirrors_done = 0
    for _ in range(400):
        if dups_done >= n_dups:
            break
        src = int(rng.integers(len(f)))
        copies = int(rng.integers(1, dup_max))
        g = f
        for _c in range(copies):
            pos = int(rng.integers(len(g) + 1))
            g = np.insert(g, pos, f[src], axis=0)
        if ok(g):
            f = g
            dups_done += 1
    for _ in range(400):
        if mirrors_done >= n_mirrors:
            break
        p = int(rng.integers(len(f)))
        g = f.copy()
        g[p, 1] = g[p, 0]
        g[p] = to_f32_unit(g[p:p + 1])[0]
        if g[p, 0] != g[p, 1]:
            continue
        near = np.argsort(((g - g[p]) ** 2).sum(1), kind="stable")[1:8]
        a = int(near[int(rng.integers(len(near)))])
        if g[a, 0] == g[a, 1]:
            continue
        b = g[a].copy()
        b[0], b[1] = g[a, 1], g[a, 0]
        pos = int(rng.integers(len(g) + 1))
        g = np.insert(g, pos, b, axis=0)
        if ok(g):
            f = g
            mirrors_done += 1
    assert dups_done == n_dups and mirrors_done == n_mirrors, (dups_done, mirrors_done)
    return f


def make_cluster_features(seed, n, d, n_outliers, k1, k2, n_dups, dup_max, n_mirrors, accept=None,
                          **blob_kw):
    """Clustered unit features (float32) with exact ties and no tie group across a boundary.
    Seeds seed, seed+1, ... are tried until one works and accept(features) holds."""
    for s in range(seed, seed + 200):
        rng = np.random.default_rng(s)
        n_extra = n_dups * (dup_max - 1) + n_mirrors   # upper bound; fill the rest with blobs
        x, _ = blob_points(rng, n - n_extra, d, n_outliers, **blob_kw)
        base = to_f32_unit(x)
        ok = lambda g: jaccard_ties_ok(g, k1, k2)
        if not ok(base):
            continue
        try:
            f = add_exact_ties(rng, base, n_dups, dup_max, n_mirrors, ok)
        except AssertionError:
            continue
        # Top up to exactly n rows with extra jittered blob members (ties re-checked).
        for _ in range(200):
            if len(f) >= n:
                break
            src = f[int(rng.integers(len(f)))].astype(F64)
            cand = to_f32_unit((src + 0.3 * rng.standard_normal(d) / math.sqrt(d))[None, :])
            g = np.insert(f, int(rng.integers(len(f) + 1)), cand[0], axis=0)
            if ok(g):
                f = g
        if len(f) != n or (accept is not None and not accept(f)):
            continue
        return f, s
    raise RuntimeError("no seed without boundary ties")


def tensor(a, dtype):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).astype(dtype)))


def scalar64(x):
    return torch.tensor(float(x), dtype=torch.float64)


def scalar_i64(x):
    return torch.tensor(int(x), dtype=torch.int64)


# --------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------

JACCARD_SPECS = [
    # name, seed, n, d, outliers, k1, k2, dup groups, max group size, mirror ties
    ("mmt_k1_20_k2_6_n200", 1000, 200, 32, 6, 20, 6, 5, 3, 3),
    ("tllib_k1_30_k2_6_n160", 2000, 160, 32, 5, 30, 6, 4, 3, 2),
    ("mmt_k1_20_k2_6_n40", 3000, 40, 16, 2, 20, 6, 2, 3, 1),
    ("tllib_k1_30_k2_6_n30_k1_ge_n", 4000, 30, 16, 1, 30, 6, 1, 2, 1),
    ("small_k1_5_k2_2_n60", 5000, 60, 16, 3, 5, 2, 3, 2, 2),
    ("small_k1_5_k2_1_n120", 6000, 120, 32, 4, 5, 1, 3, 3, 2),
]

JACCARD_CACHE = {}


def build_jaccard():
    cases = []
    for name, seed, n, d, n_out, k1, k2, n_dups, dup_max, n_mirrors in JACCARD_SPECS:
        f, used_seed = make_cluster_features(seed, n, d, n_out, k1, k2, n_dups, dup_max, n_mirrors,
                                             accept=jaccard_case_accept(name, k1, k2))
        assert f.shape == (n, d)
        jac, dist, rank = jaccard64(f, k1, k2)
        jac32, rank32 = jaccard32_original(f, k1, k2)
        # Boundary sets of the float32 ranking match the float64 ones.
        for p in boundary_positions(k1, k2, n):
            assert np.array_equal(np.sort(rank[:, :p], axis=1), np.sort(rank32[:, :p], axis=1)), (name, p)
        diff = np.abs(jac32.astype(F64) - jac).max()
        assert diff <= 1e-6, (name, diff)
        assert np.all(jac >= 0) and np.all(jac <= 1) and np.all(np.diag(jac) == 0), name
        asym = np.abs(jac - jac.T).max()
        asym32 = np.abs(jac32 - jac32.T).max()
        iu = np.triu_indices(n, 1)
        dup_pairs = sum(1 for i, j in zip(*iu) if np.array_equal(f[i], f[j]))
        exact_ties = sum(len(r) - len(np.unique(r)) for r in dist)
        zero_pairs = int((jac[np.triu_indices(n, 1)] == 0.0).sum())
        frac_lt1 = float((jac[np.triu_indices(n, 1)] < 1.0).mean())
        eps, top, m = adaptive_eps(jac, 1.6e-3)
        eps_tiny, _, _ = adaptive_eps(jac, 1.6e-3, zero_as_tiny=True)
        assert labels_robust(jac, eps, 4)
        labels = dbscan_labels(jac, eps, 4)
        # The round-half-to-even choice is visible in the k1=5 cases (2, not 3).
        if k1 % 2 == 1 and half_k(k1) < k1 / 2:
            alt = jaccard64(f, k1, k2, kh=half_k(k1) + 1)[0]
            log(f"  {name}: round-half-up ({half_k(k1) + 1}) instead of {half_k(k1)} changes "
                f"max |diff| = {np.abs(alt - jac).max():.3g}")
            assert np.abs(alt - jac).max() > 1e-3
        log(f"jaccard/{name}: seed {used_seed}, n={n} d={d} k1={k1} k2={k2}, f32-vs-f64 max {diff:.2e}, "
            f"max|D-D^T| {asym:.2e} (float32 path {asym32:.2e}), zero pairs {zero_pairs} "
            f"(duplicate-row pairs {dup_pairs}), exact distance ties {exact_ties}, frac<1 {frac_lt1:.3f}, "
            f"eps(1.6e-3) {eps:.6f} (top {top}/{m}), eps_tiny {eps_tiny:.3g}, "
            f"clusters {labels.max() + 1}, noise {(labels == -1).sum()}")
        JACCARD_CACHE[name] = dict(features=f, k1=k1, k2=k2, D=jac)
        cases.append({
            "name": name,
            "options": {"k1": k1, "k2": k2, "seed": used_seed},
            "inputs": {"features": tensor(f, F32)},
            "outputs": {
                "jaccard": tensor(jac, F32),
                "eps_rho_1.6e-3": scalar64(eps),
                "dbscan_labels": tensor(labels, np.int64),
                "nonzero_zero_pairs": scalar_i64(zero_pairs),
            },
        })
    return cases


def build_adaptive_eps():
    cases = []
    included_ones = False
    for name, entry in JACCARD_CACHE.items():
        d = entry["D"]
        n = d.shape[0]
        upper = d[np.triu_indices(n, 1)]
        below_one = int((upper[upper != 0.0] < 1.0).sum())
        # With n <= 200 the fraction of entries < 1 is above 2 %, so 2e-2 never reaches the 1.0
        # entries. rho = 0.1 on the sparse k1=5, k2=1 case does.
        rhos = (1.6e-3, 0.7e-3, 2e-2) + ((0.1,) if name == "small_k1_5_k2_1_n120" else ())
        for rho in rhos:
            if int(round(rho * int((upper != 0.0).sum()))) < 1:
                log(f"adaptive_eps/{name}: rho {rho} gives top = 0 (eps = nan in the original); skipped")
                continue
            eps, top, m = adaptive_eps(d, rho)
            eps_tiny, top_t, m_t = adaptive_eps(d, rho, zero_as_tiny=True)
            assert eps_tiny <= eps
            if top > below_one:
                included_ones = True
            log(f"adaptive_eps/{name}_rho_{rho:g}: M={m} top={top} (entries<1: {below_one}) eps={eps:.6f} "
                f"eps_zero_pairs_as_tiny={eps_tiny:.6g} (top {top_t}/{m_t})")
            cases.append({
                "name": f"{name}_rho_{rho:g}",
                "options": {"k1": entry["k1"], "k2": entry["k2"], "rho": rho},
                "inputs": {"features": tensor(entry["features"], F32)},
                "outputs": {"eps": scalar64(eps), "eps_zero_pairs_as_tiny": scalar64(eps_tiny)},
            })
    assert included_ones, "no case where top exceeds the entries < 1"
    return cases


def build_dbscan():
    cases = []
    for src, suffix, eps, ms in DBSCAN_SPECS:
        entry = JACCARD_CACHE[src]
        d = entry["D"]
        if eps is None:
            eps = adaptive_eps(d, 1.6e-3)[0]
        assert labels_robust(d, eps, ms)
        labels = dbscan_labels(d, eps, ms)
        if suffix == "tiny_eps_no_clusters":
            assert np.all(labels == -1)
        if suffix == "eps_1_one_cluster":
            assert np.all(labels == 0)
        log(f"dbscan/{src}_{suffix}: eps={eps:.6g} min_samples={ms} clusters={labels.max() + 1} "
            f"noise={(labels == -1).sum()}")
        cases.append({
            "name": f"{src}_{suffix}",
            "options": {"source": "features", "k1": entry["k1"], "k2": entry["k2"], "eps": float(eps),
                        "min_samples": ms},
            "inputs": {"features": tensor(entry["features"], F32)},
            "outputs": {"labels": tensor(labels, np.int64)},
        })
    for name, d, eps, ms, expect in hand_made_dense_cases():
        labels = dbscan_labels(d.astype(F64), eps, ms)
        assert np.array_equal(labels, expect), (name, labels, expect)
        log(f"dbscan/{name}: n={d.shape[0]} labels={labels.tolist()}")
        cases.append({
            "name": name,
            "options": {"source": "dense", "k1": None, "k2": None, "eps": eps, "min_samples": ms},
            "inputs": {"dense_distance": tensor(d, F32)},
            "outputs": {"labels": tensor(labels, np.int64)},
        })
    return cases


def hand_made_dense_cases():
    out = []

    def link(d, pairs, val):
        for i, j in pairs:
            d[i, j] = d[j, i] = val

    # Case 1 (eps 0.5, min_samples 4). Cluster B is the clique {2, 5, 7, 13} and cluster A is
    # the clique {4, 8, 9, 12}; all of them are core. Border point 0 is within eps of 7 (B, at
    # exactly eps = 0.5, inclusive) and of 4 (A, at 0.1). Its neighbourhood {0, 4, 7} has 3 < 4
    # points, so 0 is not core. B holds the lower core index (2), so it is found first (label
    # 0) and takes 0, although 0 is closer to A. Border 11 touches A only (label 1). The pair
    # {1, 3} is too small to have a core, and 6-10 are at 0.50001 > eps, so all of these are noise.
    n = 14
    d = np.ones((n, n), dtype=F32)
    np.fill_diagonal(d, 0.0)
    link(d, [(2, 5), (2, 7), (2, 13), (5, 7), (5, 13), (7, 13)], 0.2)     # cluster B
    link(d, [(4, 8), (4, 9), (4, 12), (8, 9), (8, 12), (9, 12)], 0.3)     # cluster A
    link(d, [(0, 7)], 0.5)
    link(d, [(0, 4)], 0.1)
    link(d, [(11, 9)], 0.45)
    link(d, [(1, 3)], 0.4)
    link(d, [(6, 10)], 0.50001)
    expect = np.array([0, -1, 0, -1, 1, 0, -1, 0, 1, 1, -1, 1, 1, 0], dtype=np.int64)
    out.append(("dense_border_two_clusters", d, 0.5, 4, expect))

    # Case 2 (eps 0.25, min_samples 2, slightly asymmetric, as float32 Jaccard matrices are).
    # Neighbourhoods are ROWS {j : D[i,j] <= eps}. Core rows 6, 9 and 12 reach border point 0
    # (D[c,0] = 0.25, inclusive), but row 0 reaches nothing (D[0,c] = 0.3), so 0 is not core.
    # Row 2 reaches 12 (D[2,12] = 0.25) but row 12 does not reach 2, so 2 is core. Index order
    # then gives: 1 seeds label 0 ({1, 6}, and 6 takes border 0 first). 2 seeds label 1, which
    # reaches 12 through row 2 and 5 through row 12. 3 seeds label 2 ({3, 9}; 0 is taken).
    # Points 4 and 7 are at 0.26 > eps, and 8, 10, 11 are isolated: all noise.
    n = 13
    d = np.ones((n, n), dtype=F32)
    np.fill_diagonal(d, 0.0)
    link(d, [(1, 6)], 0.1)
    link(d, [(3, 9)], 0.2)
    link(d, [(5, 12)], 0.15)
    for c in (6, 9, 12):
        d[c, 0] = 0.25      # core rows reach the border point (inclusive)
        d[0, c] = 0.3       # the border's own row does not
    d[2, 12] = 0.25
    d[12, 2] = 0.3          # 12 reaches 2 only through 2's row
    link(d, [(4, 7)], 0.26)
    expect = np.array([0, 0, 1, 2, -1, 1, 0, -1, -1, 2, -1, -1, 1], dtype=np.int64)
    out.append(("dense_border_three_clusters_asymmetric", d, 0.25, 2, expect))
    return out


RERANK_SPECS = [
    # name, seed, q, g, d, k1, k2, lambda
    ("default_k1_20_k2_6_l0.3_q30_g120", 7000, 30, 120, 32, 20, 6, 0.3),
    ("lambda_0_q20_g80", 8000, 20, 80, 16, 20, 6, 0.0),
    ("small_k1_5_k2_2_l0.3_q15_g60", 9000, 15, 60, 16, 5, 2, 0.3),
    ("default_q40_g150", 9500, 40, 150, 32, 20, 6, 0.3),
]


def make_query_gallery(seed, q, g, d, k1, k2):
    """Query and gallery drawn from shared identity blobs. The gallery gets two duplicated gallery
    rows and a copy of one query. A copy is kept only if no tie group crosses a boundary of the
    (q+g) ranking. Otherwise another candidate is tried. The base draw is redrawn with the next seed
    if it has a near tie."""
    positions = boundary_positions(k1, k2, q + g)

    def ok(qf, gf):
        return not tie_straddles(rerank_original_distance64(qf, gf), positions, RERANK_GAP)

    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        x, _ = blob_points(rng, q + g - 3, d, 3, size_range=(3, 14), sigma_range=(0.3, 0.7))
        x = to_f32_unit(x)
        qf, gf = x[:q], x[q:]
        if not ok(qf, gf):
            continue
        wanted = ["gallery", "gallery", "query"]
        for _ in range(300):
            if not wanted:
                break
            src = gf[int(rng.integers(len(gf)))] if wanted[0] == "gallery" else qf[int(rng.integers(q))]
            cand = np.insert(gf, int(rng.integers(len(gf) + 1)), src, axis=0)
            if ok(qf, cand):
                gf = cand
                wanted.pop(0)
        if wanted:
            continue
        assert gf.shape[0] == g
        return qf, gf, s
    raise RuntimeError("no seed without boundary ties")


def build_rerank():
    cases = []
    for name, seed, q, g, d, k1, k2, lam in RERANK_SPECS:
        qf, gf, used = make_query_gallery(seed, q, g, d, k1, k2)
        final, dist, rank = rerank64(qf, gf, k1, k2, lam)
        final32, rank32 = rerank32_original(qf, gf, k1, k2, lam)
        for p in boundary_positions(k1, k2, q + g):
            assert np.array_equal(np.sort(rank[:, :p], axis=1), np.sort(rank32[:, :p], axis=1)), (name, p)
        diff = np.abs(final32.astype(F64) - final).max()
        assert diff <= 1e-6, (name, diff)
        assert np.all(final >= -1e-12) and np.all(final <= 1 + 1e-12)
        log(f"rerank/{name}: seed {used}, q={q} g={g} d={d}, f32-vs-f64 max {diff:.2e}, "
            f"min {final.min():.3g}, max {final.max():.3g}, "
            f"frac with shared support {(final < (1 - lam) + lam * dist[:q, q:] - 1e-12).mean():.3f}")
        cases.append({
            "name": name,
            "options": {"k1": k1, "k2": k2, "lambda": lam, "seed": used},
            "inputs": {"query": tensor(qf, F32), "gallery": tensor(gf, F32)},
            "outputs": {"distance": tensor(final, F32)},
        })
    return cases


def sqeuclid32(a, b):
    """Squared Euclidean distances of float32 unit rows, computed in float64, stored as float32."""
    ga = exact_gram(np.concatenate([a, b], axis=0))
    sq = np.diag(ga)
    na = a.shape[0]
    return (sq[:na, None] + sq[None, na:] - 2.0 * ga[:na, na:]).astype(F32)


def make_reid_split(rng, n_ids, q, g, d, n_cams):
    """Identity blobs with camera labels. Query items are drawn from identities and gallery items
    cover every identity, so most queries have valid matches."""
    centres = unit_rows(rng.standard_normal((n_ids, d)))
    sig = rng.uniform(1.0, 2.0, size=n_ids)   # noisy enough for mAP well below 1

    def draw(ids):
        x = centres[ids] + sig[ids][:, None] * rng.standard_normal((len(ids), d)) / math.sqrt(d)
        return to_f32_unit(x)

    gids = np.concatenate([np.arange(n_ids), rng.integers(0, n_ids, g - n_ids)])
    gids = gids[rng.permutation(g)]
    qids = rng.integers(0, n_ids, q)
    return draw(qids), draw(gids), qids.astype(np.int64), gids.astype(np.int64), \
        rng.integers(0, n_cams, q).astype(np.int64), rng.integers(0, n_cams, g).astype(np.int64)


def build_evaluate():
    # Hand-computed APs: scores descending, distinct: [hit, miss, hit, miss] -> (1/1 + 2/3)/2.
    assert abs(average_precision_score([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) - (1 + 2 / 3) / 2) < 1e-15
    assert abs(own_step_ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) - (1 + 2 / 3) / 2) < 1e-15
    # Ties: scores [0.9, 0.5, 0.5, 0.1], y [0, 1, 0, 1]. Thresholds: 0.9 -> P 0, R 0;
    # 0.5 -> tp 1, fp 2, P 1/3, R 1/2; 0.1 -> P 1/2, R 1. AP = 0.5*(1/3) + 0.5*0.5 = 5/12.
    assert abs(average_precision_score([0, 1, 0, 1], [0.9, 0.5, 0.5, 0.1]) - 5 / 12) < 1e-15
    assert abs(own_step_ap([0, 1, 0, 1], [0.9, 0.5, 0.5, 0.1]) - 5 / 12) < 1e-15

    cases = []

    def add(name, dist, qids, qcams, gids, gcams, seed):
        m_ap, cmc, kept = evaluate(dist, qids, qcams, gids, gcams)
        log(f"evaluate/{name}: q={dist.shape[0]} g={dist.shape[1]} mAP={m_ap:.6f} "
            f"R1={cmc[0]:.4f} R5={cmc[4]:.4f} valid queries={kept}")
        cases.append({
            "name": name,
            "options": {"seed": seed},
            "inputs": {"distances": tensor(dist, F32), "query_ids": tensor(qids, np.int64),
                       "query_cams": tensor(qcams, np.int64), "gallery_ids": tensor(gids, np.int64),
                       "gallery_cams": tensor(gcams, np.int64)},
            "outputs": {"mean_ap": scalar64(m_ap), "cmc": tensor(cmc, F64),
                        "num_valid_queries": scalar_i64(kept)},
        })
        return kept

    # 1. Clustered features, squared Euclidean distances.
    rng = np.random.default_rng(11)
    qf, gf, qids, gids, qcams, gcams = make_reid_split(rng, 20, 30, 120, 32, 6)
    add("clustered_q30_g120", sqeuclid32(qf, gf), qids, qcams, gids, gcams, 11)

    # 2. Distances rounded to 0.1: many exact ties. sklearn groups them for AP, and CMC uses a
    #    stable order.
    rng = np.random.default_rng(12)
    qf, gf, qids, gids, qcams, gcams = make_reid_split(rng, 8, 25, 80, 16, 3)
    dist = np.round(sqeuclid32(qf, gf).astype(F64), 1).astype(F32)
    n_tied = sum(len(np.unique(r)) < len(r) for r in dist)
    assert n_tied == dist.shape[0]
    # Tie grouping matters: breaking ties by gallery index changes AP for some queries, and
    # the reverse tie order changes the first-match rank for some.
    ap_changes = cmc_changes = 0
    for i in range(dist.shape[0]):
        valid = ~((gids == qids[i]) & (gcams == qcams[i]))
        y = (gids == qids[i])[valid]
        if not y.any():
            continue
        dv = dist[i][valid].astype(F64)
        broken = -(dv + 1e-9 * np.arange(len(dv)) / len(dv))
        ap_changes += abs(average_precision_score(y, -dv) - average_precision_score(y, broken)) > 1e-9
        fwd = np.argsort(dv, kind="stable")
        rev = len(dv) - 1 - np.argsort(dv[::-1], kind="stable")
        cmc_changes += np.flatnonzero(y[fwd])[0] != np.flatnonzero(y[rev])[0]
    log(f"  tied case: tie grouping changes AP for {ap_changes} queries and tie order changes "
        f"the first-match rank for {cmc_changes}")
    assert ap_changes > 0 and cmc_changes > 0
    add("tied_quantised_q25_g80", dist, qids, qcams, gids, gcams, 12)

    # 3. Queries without a valid match, which are skipped. Queries 0-2 have id 99, which is not in
    #    the gallery. Gallery items 0-2 become id 50 under camera 2 only: queries 3-4 (id 50,
    #    camera 2) have nothing valid, and query 5 (id 50, camera 1) keeps them.
    rng = np.random.default_rng(13)
    qf, gf, qids, gids, qcams, gcams = make_reid_split(rng, 12, 20, 60, 16, 4)
    qids[0:3] = 99
    gids[0:3] = 50
    gcams[0:3] = 2
    qids[3:6] = 50
    qcams[3:5] = 2
    qcams[5] = 1
    dist = sqeuclid32(qf, gf)
    skipped = [i for i in range(20)
               if not ((gids == qids[i]) & ~((gids == qids[i]) & (gcams == qcams[i]))).any()]
    assert skipped[:5] == [0, 1, 2, 3, 4] and 5 not in skipped, skipped
    kept = add("no_valid_match_q20_g60", dist, qids, qcams, gids, gcams, 13)
    assert kept == 20 - len(skipped)

    # 4. Query 0's only valid match is at rank 120 (>= 100), so ret gets nothing but the query still
    #    counts. Query 1's only match is at rank 99, the last counted slot.
    rng = np.random.default_rng(14)
    qf, gf, qids, gids, qcams, gcams = make_reid_split(rng, 15, 12, 150, 16, 5)
    qids[1] = (qids[0] + 1) % 15
    dist = sqeuclid32(qf, gf)
    for qi, target_rank in ((0, 120), (1, 99)):
        gids[gids == qids[qi]] = 1000 + qi        # move that identity's gallery items away
        order = np.argsort(dist[qi], kind="stable")
        gids[order[target_rank]] = qids[qi]
        gcams[order[target_rank]] = (qcams[qi] + 1) % 5
    for qi, target_rank in ((0, 120), (1, 99)):
        valid = ~((gids == qids[qi]) & (gcams == qcams[qi]))
        order = np.argsort(dist[qi][valid], kind="stable")
        assert int(np.flatnonzero((gids[valid] == qids[qi])[order])[0]) == target_rank
    add("deep_first_match_q12_g150", dist, qids, qcams, gids, gcams, 14)
    return cases


GROUPS = [
    ("jaccard", build_jaccard),
    ("adaptive_eps", build_adaptive_eps),
    ("dbscan", build_dbscan),
    ("rerank", build_rerank),
    ("evaluate", build_evaluate),
]


def validate(data):
    for group, cases in data.items():
        names = [c["name"] for c in cases]
        assert len(names) == len(set(names)), group
        for c in cases:
            assert set(c) == {"name", "options", "inputs", "outputs"}, (group, c["name"])
            for v in c["options"].values():
                assert v is None or isinstance(v, (bool, int, float, str)), (group, c["name"])
            for k, v in list(c["inputs"].items()) + list(c["outputs"].items()):
                assert isinstance(v, torch.Tensor) and not v.requires_grad
                assert v.dtype in (torch.float32, torch.float64, torch.int64), (group, c["name"], k)
                assert v.is_contiguous()
                assert torch.all(torch.isfinite(v.to(torch.float64))), (group, c["name"], k)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "clustering_golden.pt")
    torch.manual_seed(0)
    data = {name: build() for name, build in GROUPS}
    validate(data)
    torch.save(data, out_path)
    loaded = torch.load(out_path)
    assert list(loaded) == [name for name, _ in GROUPS]
    total = sum(len(v) for v in data.values())
    print(f"wrote {out_path}: {len(data)} groups, {total} cases, {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()
