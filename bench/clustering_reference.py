#!/usr/bin/env python3
"""The Python side of bench/clustering_side_by_side.py: MMT's clustering and
the re-ID evaluation written the way the originals run them (dense float32
numpy/torch matrices, per-row Python loops, scikit-learn), on the same
synthetic data as bench_clustering (same torch calls, same seeds).

    clustering_reference.py jaccard N      dense Jaccard + adaptive eps + DBSCAN
    clustering_reference.py evaluate Q G   per-query evaluation loop

Prints one JSON line, like bench_clustering.
"""
import json
import sys
import time

import numpy as np
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import average_precision_score

D = 2048


def synthetic_features(n, d, seed, sigma):
    """Same calls as synthetic_features in bench/clustering_bench.cpp."""
    torch.manual_seed(seed)
    ids = max(1, n // 16)
    centres = torch.randn(ids, d)
    centres = centres / centres.norm(p=2, dim=1, keepdim=True)
    features = torch.empty(n, d)
    for start in range(0, n, 1024):
        rows = min(1024, n - start)
        labels = torch.arange(start, start + rows) % ids
        chunk = centres.index_select(0, labels) + sigma * torch.randn(rows, d)
        features[start:start + rows] = chunk / chunk.norm(p=2, dim=1, keepdim=True)
    return features


def k_reciprocal(initial_rank, i, k):
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def dense_jaccard(features, k1=20, k2=6):
    """MMT's compute_jaccard_dist (notes §6.3), dense, float32."""
    n = features.size(0)
    original = 2 * features.pow(2).sum(dim=1, keepdim=True) - 2 * features.mm(features.t())
    original /= original.max(0)[0]
    original = original.t()
    initial_rank = torch.argsort(original, dim=1).numpy()
    original = original.numpy()
    k_half = int(np.around(k1 / 2))
    full = [k_reciprocal(initial_rank, i, k1) for i in range(n)]
    half = [k_reciprocal(initial_rank, i, k_half) for i in range(n)]
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        expansion = full[i]
        for candidate in full[i]:
            cand = half[candidate]
            if len(np.intersect1d(cand, full[i])) > 2 / 3 * len(cand):
                expansion = np.append(expansion, cand)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i, :] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe
    del initial_rank
    inverted = [np.where(v[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros_like(original)
    for i in range(n):
        shared = np.zeros((1, n), dtype=np.float32)
        nonzero = np.where(v[i, :] != 0)[0]
        for k in nonzero:
            rows = inverted[k]
            shared[0, rows] += np.minimum(v[i, k], v[rows, k])
        jaccard[i] = 1 - shared / (2 - shared)
    jaccard[jaccard < 0] = 0
    return jaccard


def run_jaccard(n):
    features = synthetic_features(n, D, 0, 0.02)
    start = time.perf_counter()
    jaccard = dense_jaccard(features)
    t_jaccard = time.perf_counter() - start
    tri = np.triu(jaccard, 1)
    tri = np.sort(tri[np.nonzero(tri)], axis=None)
    eps = float(tri[:int(round(1.6e-3 * tri.size))].mean())
    labels = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(jaccard)
    seconds = time.perf_counter() - start
    print(json.dumps({"workload": "jaccard-python-dense", "n": n, "seconds": round(seconds, 3),
                      "jaccard_s": round(t_jaccard, 3), "eps": eps,
                      "clusters": int(labels.max() + 1), "noise": int((labels == -1).sum())}))


def evaluate_per_query(distmat, qid, gid, qcam, gcam):
    """The originals' loop: argsort per query, scikit-learn AP, CMC."""
    indices = np.argsort(distmat, axis=1)
    matches = gid[indices] == qid[:, np.newaxis]
    aps, cmc, valid_queries = [], np.zeros(100), 0
    for i in range(distmat.shape[0]):
        valid = (gid[indices[i]] != qid[i]) | (gcam[indices[i]] != qcam[i])
        y_true = matches[i, valid]
        if not np.any(y_true):
            continue
        y_score = -distmat[i][indices[i]][valid]
        aps.append(average_precision_score(y_true, y_score))
        first = np.nonzero(y_true)[0][0]
        if first < 100:
            cmc[first] += 1
        valid_queries += 1
    return float(np.mean(aps)), np.cumsum(cmc) / valid_queries


def run_evaluate(q, g):
    torch.manual_seed(0)
    centres = torch.randn(750, D)
    centres = centres / centres.norm(p=2, dim=1, keepdim=True)
    qid, gid = torch.arange(q) % 750, torch.arange(g) % 750
    qcam, gcam = torch.arange(q) % 6, (torch.arange(g) // 750) % 6
    query = centres.index_select(0, qid) + 0.09 * torch.randn(q, D)
    gallery = centres.index_select(0, gid) + 0.09 * torch.randn(g, D)
    query = query / query.norm(p=2, dim=1, keepdim=True)
    gallery = gallery / gallery.norm(p=2, dim=1, keepdim=True)
    start = time.perf_counter()
    distmat = (query.pow(2).sum(1, keepdim=True) + gallery.pow(2).sum(1).unsqueeze(0)
               - 2 * query.mm(gallery.t())).numpy()
    t_distances = time.perf_counter() - start
    start = time.perf_counter()
    mean_ap, cmc = evaluate_per_query(distmat, qid.numpy(), gid.numpy(), qcam.numpy(), gcam.numpy())
    t_given = time.perf_counter() - start
    print(json.dumps({"workload": "evaluate-python", "q": q, "g": g, "given_s": round(t_given, 3),
                      "all_in_s": round(t_given + t_distances, 3), "mean_ap": mean_ap,
                      "rank1": float(cmc[0])}))


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("TANDEM_BENCH_THREADS", "2")))
    if sys.argv[1] == "jaccard":
        run_jaccard(int(sys.argv[2]))
    else:
        run_evaluate(int(sys.argv[2]), int(sys.argv[3]))
