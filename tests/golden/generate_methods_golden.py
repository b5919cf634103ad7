#!/usr/bin/env python3
"""Generate tests/golden/methods_golden.pt, the golden values for Tandem's methods/ losses.

This script writes an independent float64 reference of the self-training losses and
modules described in the MMT reference notes (mmt_reference_notes.md, sections 3 and 10;
API contract: self_training_methods.txt): pairwise Euclidean distance, hard-example
mining, (soft) triplet losses, soft and label-smoothed cross entropy, consistency
losses, class-balance loss, MCC, AFN and the AFN Block in eval mode. Each formula is
written here in plain torch (no TLlib/MMT code), evaluated on small deterministic inputs
(fixed seeds), and differentiated with autograd against a fixed upstream gradient. The
C++ golden tests load the result with torch::pickle_load and compare Tandem's port
against it. Asserts re-derive identities from the notes (and cross-check against
torch.nn.functional where an equivalent exists) so a wrong reference fails loudly.

Regenerate from the repository root with the project's venv (created by scripts/setup, or
$TANDEM_VENV; torch is pinned in scripts/python-requirements.txt):

    .venv/bin/python tests/golden/generate_methods_golden.py

Optional argument: the output path (default: methods_golden.pt next to this script).
The schema is documented in tests/golden/README.md.
"""

import os
import sys

import torch
import torch.nn.functional as F

DT = torch.float64
BIG = 1e7  # TLlib masking constant in hard_examples_mining
# PyTorch's binary_cross_entropy backward clamps p*(1-p) at EPSILON = 1e-12 stored as a
# float32 constant (9.99999996e-13 after widening); reproduced so the gradient at p = 0 or 1
# matches torch to the last bits (it would differ by 4e-9 relative with the double 1e-12).
BCE_GRAD_EPS = float(torch.tensor(1e-12, dtype=torch.float32).item())


# --------------------------------------------------------------------------------------
# Reference formulas (float64, own code, following the notes section by section)
# --------------------------------------------------------------------------------------

def l2_normalize(x):
    """Row-wise x / max(||x||, 1e-12) (what F.normalize(p=2, dim=1) computes)."""
    return x / x.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)


def pairwise_euclidean_distance(x, y):
    """Notes 3.6: sqrt(clamp(|x_i|^2 + |y_j|^2 - 2 x_i.y_j, min=1e-12))."""
    xx = (x * x).sum(dim=1, keepdim=True)          # (m,1)
    yy = (y * y).sum(dim=1, keepdim=True).t()      # (1,n)
    d2 = xx + yy - 2.0 * (x @ y.t())
    return d2.clamp(min=1e-12).sqrt()


def hard_examples_mining(dist, same):
    """Notes 3.6: hardest positive over dist - 1e7*(1-S), hardest negative over dist + 1e7*S.

    Returns (ap, an, ap_index, an_index); values are gathered from the masked matrices
    (equal to the raw distances for valid picks).
    """
    pos_scores = dist + (-BIG) * (1.0 - same)
    neg_scores = dist + BIG * same
    ap_index = pos_scores.argmax(dim=1)
    an_index = neg_scores.argmin(dim=1)
    ap = pos_scores.gather(1, ap_index.unsqueeze(1)).squeeze(1)
    an = neg_scores.gather(1, an_index.unsqueeze(1)).squeeze(1)
    return ap, an, ap_index, an_index


def same_label_matrix(labels):
    return (labels.unsqueeze(0) == labels.unsqueeze(1)).to(DT)


def triplet_loss(features, labels, margin, normalize_feature):
    """Notes 3.6: mean_i max(0, ap_i - an_i + margin)."""
    f = l2_normalize(features) if normalize_feature else features
    dist = pairwise_euclidean_distance(f, f)
    ap, an, _, _ = hard_examples_mining(dist, same_label_matrix(labels))
    return (ap - an + margin).clamp(min=0.0).mean()


def soft_triplet_loss(features_1, features_2, labels, margin, normalize_feature):
    """Notes 3.6: mining on features_1 only; log_softmax([ap, an]) of raw distances.

    margin float -> mean_i(-m*z_i0 - (1-m)*z_i1), features_2 unused.
    margin None  -> teacher distances of features_2 gathered at the student's indices,
                    softmaxed and detached; mean_i sum_k -t_ik*z_ik.
    """
    f1, f2 = features_1, features_2
    if normalize_feature:
        f1, f2 = l2_normalize(f1), l2_normalize(f2)
    d1 = pairwise_euclidean_distance(f1, f1)
    ap, an, ap_index, an_index = hard_examples_mining(d1, same_label_matrix(labels))
    two = torch.stack([ap, an], dim=1)                     # (N,2)
    z = two - torch.logsumexp(two, dim=1, keepdim=True)    # log_softmax
    if margin is not None:
        return (-margin * z[:, 0] - (1.0 - margin) * z[:, 1]).mean()
    d2 = pairwise_euclidean_distance(f2, f2)
    t_two = torch.stack([d2.gather(1, ap_index.unsqueeze(1)).squeeze(1),
                         d2.gather(1, an_index.unsqueeze(1)).squeeze(1)], dim=1)
    t = torch.exp(t_two - torch.logsumexp(t_two, dim=1, keepdim=True)).detach()
    return (-t * z).sum(dim=1).mean()


def log_softmax_rows(x):
    return x - torch.logsumexp(x, dim=1, keepdim=True)


def soft_cross_entropy_loss(y_logits, target_logits):
    """Notes 3.6: mean_i sum_c -softmax(target)_ic (detached) * log_softmax(y)_ic."""
    t = torch.exp(log_softmax_rows(target_logits)).detach()
    return (-t * log_softmax_rows(y_logits)).sum(dim=1).mean()


def cross_entropy_label_smooth(logits, labels, num_classes, epsilon):
    """Notes 3.6: q = (1-eps)*onehot + eps/C; (-q * log_softmax).mean(0).sum()."""
    onehot = torch.zeros(logits.shape[0], num_classes, dtype=DT)
    onehot[torch.arange(logits.shape[0]), labels] = 1.0
    q = (1.0 - epsilon) * onehot + epsilon / num_classes
    return (-q * log_softmax_rows(logits)).mean(dim=0).sum()


def consistency_loss(y, y_teacher, mask, distance, reduction):
    """Notes 3.1: per-row D(y, y_teacher) * mask; 'mean' divides by N (not by sum(mask))."""
    diff = y - y_teacher
    if distance == "l2":
        per_row = (diff * diff).sum(dim=1)
    elif distance == "l1":
        per_row = diff.abs().sum(dim=1)
    else:
        raise ValueError(distance)
    per_row = per_row * mask
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row


class _TorchBCE(torch.autograd.Function):
    """Mean binary cross entropy with PyTorch's exact clamp semantics.

    forward: mean_c[(t-1)*max(log(1-p), -100) - t*max(log p, -100)]
    backward (PyTorch's binary_cross_entropy_backward): g*(p-t)/max(p*(1-p), eps)/C with
    eps = float32(1e-12),
    i.e. a finite (huge) gradient where p is exactly 0 or 1, not the 0 that autograd of
    clamp(log p) would give.
    """

    @staticmethod
    def forward(ctx, p, t):
        ctx.save_for_backward(p, t)
        log_p = torch.log(p).clamp(min=-100.0)
        log_1mp = torch.log1p(-p).clamp(min=-100.0)
        return ((t - 1.0) * log_1mp - t * log_p).mean()

    @staticmethod
    def backward(ctx, g):
        p, t = ctx.saved_tensors
        grad = g * (p - t) / (p * (1.0 - p)).clamp(min=BCE_GRAD_EPS) / p.numel()
        return grad, None


def class_balance_loss(y, num_classes):
    """Notes 3.2: BCE(mean_i y_i, uniform 1/C) with the -100 log clamp."""
    p_bar = y.mean(dim=0)
    u = torch.full((num_classes,), 1.0 / num_classes, dtype=DT)
    return _TorchBCE.apply(p_bar, u)


def mcc_parts(logits, temperature):
    """Notes 3.4, returning (loss, normalised confusion matrix)."""
    n, c = logits.shape
    p = torch.exp(log_softmax_rows(logits / temperature))
    h = (-(p * torch.log(p + 1e-5)).sum(dim=1)).detach()
    w = 1.0 + torch.exp(-h)
    w = (n * w / w.sum()).unsqueeze(1)                # (N,1), average 1
    m = (p * w).t() @ p                               # (C,C), symmetric
    m = m / m.sum(dim=1)                              # broadcast over the last axis: M[j,k]/s[k]
    loss = (m.sum() - torch.trace(m)) / c
    return loss, m


def minimum_class_confusion_loss(logits, temperature):
    return mcc_parts(logits, temperature)[0]


def adaptive_feature_norm(f, delta):
    """Notes 3.5: r_i = ||f_i|| (detached) + delta; mean_i (||f_i|| - r_i)^2.

    Uses torch's norm so that an all-zero row gets gradient 0 (norm backward masks it).
    """
    norm = f.norm(p=2, dim=1)
    radius = norm.detach() + delta
    return ((norm - radius) ** 2).mean()


def afn_block_eval(x, fc_weight, fc_bias, bn_weight, bn_bias, running_mean, running_var, eps=1e-5):
    """Notes 3.5: Linear -> BatchNorm1d (running stats) -> ReLU; dropout is identity in eval."""
    z = x @ fc_weight.t() + fc_bias
    z = (z - running_mean) / torch.sqrt(running_var + eps) * bn_weight + bn_bias
    return z.clamp(min=0.0)


# --------------------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------------------

def _gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=DT) * scale


def make_case(name, options, inputs, fn, grad_names, g, upstream=None):
    """Evaluate fn(leaves, options) -> outputs dict (with "output") and its gradients.

    grad_names: float inputs that get a gradient entry (zeros where the reference gives
    none, e.g. detached teacher inputs).
    """
    leaves = {}
    for k, v in inputs.items():
        v = v.detach().clone().contiguous()
        if k in grad_names:
            v.requires_grad_(True)
        leaves[k] = v
    outputs = fn(leaves, options)
    out = outputs["output"]
    if upstream is None:
        upstream = torch.ones((), dtype=DT) if out.dim() == 0 else randn(g, *out.shape)
    assert upstream.shape == out.shape
    grads = {}
    if grad_names:
        targets = [leaves[k] for k in grad_names]
        gs = torch.autograd.grad((out * upstream).sum(), targets, allow_unused=True)
        for k, gr in zip(grad_names, gs):
            grads[k] = torch.zeros_like(leaves[k]) if gr is None else gr
    case = {
        "name": name,
        "options": dict(options),
        "inputs": {k: v.detach().clone().contiguous() for k, v in inputs.items()},
        "outputs": {k: v.detach().clone().contiguous() for k, v in outputs.items()},
        "upstream": upstream.detach().clone().contiguous(),
        "grads": {k: v.detach().clone().contiguous() for k, v in grads.items()},
    }
    return case


def clustered_features(g, labels, dim, spread=1.0, noise=0.6):
    """Identity centres plus noise, so triplet hinges are a mix of active and inactive."""
    num_ids = int(labels.max()) + 1
    centres = randn(g, num_ids, dim, scale=spread)
    return centres[labels] + randn(g, labels.numel(), dim, scale=noise)


def pk_labels(p, k):
    return torch.arange(p, dtype=torch.int64).repeat_interleave(k)


def shuffled(g, labels):
    return labels[torch.randperm(labels.numel(), generator=g)]


def close(a, b, tol=1e-10):
    return torch.allclose(a, b, rtol=tol, atol=tol)


def mining_is_clear(features_or_dist, labels, normalize=False, is_dist=False, min_gap=1e-3):
    """True if every hardest positive/negative wins by min_gap (a float32 port picks the same index)."""
    if is_dist:
        dist = features_or_dist
    else:
        f = l2_normalize(features_or_dist) if normalize else features_or_dist
        dist = pairwise_euclidean_distance(f, f)
    same = same_label_matrix(labels)
    for scores, descending in ((dist + (-BIG) * (1.0 - same), True), (dist + BIG * same, False)):
        top2 = scores.sort(dim=1, descending=descending).values[:, :2]
        if top2.shape[1] == 2 and (top2[:, 0] - top2[:, 1]).abs().min() <= min_gap:
            return False
    return True


def clear_features(seed, labels, make, normalize=False):
    """Draw features with make(generator) from seed, seed+7919, ... until mining is clear.

    Returns (generator, features); deterministic for a given seed.
    """
    for attempt in range(50):
        g = _gen(seed + 7919 * attempt)
        f = make(g)
        if mining_is_clear(f, labels, normalize):
            return g, f
    raise RuntimeError("no clear draw")


# ----- groups -------------------------------------------------------------------------

def group_pairwise():
    cases = []

    def fn(t, o):
        return {"output": pairwise_euclidean_distance(t["x"], t["y"])}

    g = _gen(101)
    x = randn(g, 6, 5)
    cases.append(make_case("x_vs_x_6x5", {}, {"x": x, "y": x.clone()}, fn, ["x", "y"], g))
    g = _gen(102)
    cases.append(make_case("x_vs_y_5x7_d4", {}, {"x": randn(g, 5, 4), "y": randn(g, 7, 4, scale=2.0)},
                           fn, ["x", "y"], g))
    g = _gen(103)
    x = randn(g, 4, 6)
    y = randn(g, 3, 6)
    y[1] = x[2]
    cases.append(make_case("x_vs_y_with_shared_row", {}, {"x": x, "y": y}, fn, ["x", "y"], g))
    g = _gen(104)
    cases.append(make_case("single_pair_d16", {}, {"x": randn(g, 1, 16), "y": randn(g, 1, 16)},
                           fn, ["x", "y"], g))

    for c in cases:
        d = c["outputs"]["output"]
        ref = torch.cdist(c["inputs"]["x"], c["inputs"]["y"])
        exact = torch.isclose(ref, torch.zeros_like(ref), atol=1e-12)
        assert close(d[~exact], ref[~exact], 1e-9), c["name"]
        assert close(d[exact], torch.full_like(d[exact], 1e-6), 1e-12), c["name"]
        # clamped entries (coincident rows) receive no gradient
        if exact.any():
            up = c["upstream"].clone()
            up[~exact] = 0.0
            xx = c["inputs"]["x"].clone().requires_grad_(True)
            yy = c["inputs"]["y"].clone().requires_grad_(True)
            gx, gy = torch.autograd.grad((pairwise_euclidean_distance(xx, yy) * up).sum(), [xx, yy])
            assert torch.all(gx == 0) and torch.all(gy == 0)
    x_vs_x = cases[0]["outputs"]["output"]
    assert close(torch.diagonal(x_vs_x), torch.full((6,), 1e-6), 1e-12)
    return cases


def group_hard_mining():
    cases = []

    def fn(t, o):
        ap, an, ap_i, an_i = hard_examples_mining(t["dist"], t["same_label"])
        return {"output": ap, "an": an, "ap_index": ap_i, "an_index": an_i}

    def add(name, seed, labels, dim):
        g, f = clear_features(seed, labels, lambda g: clustered_features(g, labels, dim))
        dist = pairwise_euclidean_distance(f, f)
        same = same_label_matrix(labels)
        n = labels.numel()
        c = make_case(name, {}, {"dist": dist, "same_label": same}, fn, [], g,
                      upstream=torch.ones(n, dtype=DT))
        # brute-force check
        o = c["outputs"]
        for i in range(n):
            pos = [j for j in range(n) if labels[j] == labels[i]]
            neg = [j for j in range(n) if labels[j] != labels[i]]
            jp = max(pos, key=lambda j: dist[i, j].item())
            assert o["ap_index"][i].item() == jp and o["output"][i].item() == dist[i, jp].item()
            if neg:
                jn = min(neg, key=lambda j: dist[i, j].item())
                assert o["an_index"][i].item() == jn and o["an"][i].item() == dist[i, jn].item()
            else:  # degenerate: masked entry, the row's own diagonal (smallest distance)
                assert o["an_index"][i].item() == i
                assert o["an"][i].item() == dist[i, i].item() + BIG
        cases.append(c)

    add("pk_3x4", 201, pk_labels(3, 4), 8)
    add("pk_4x3_shuffled", 202, shuffled(_gen(2020), pk_labels(4, 3)), 6)
    add("singleton_label", 203, torch.tensor([0, 0, 0, 1, 1, 2, 1, 0], dtype=torch.int64), 5)
    add("all_same_label_no_negative", 204, torch.zeros(5, dtype=torch.int64), 4)
    # singleton: ap is the self distance 1e-6 at index i
    c = cases[2]
    assert c["outputs"]["ap_index"][5].item() == 5
    assert abs(c["outputs"]["output"][5].item() - 1e-6) < 1e-15
    return cases


def group_triplet():
    cases = []

    def fn(t, o):
        return {"output": triplet_loss(t["features"], t["labels"], o["margin"], o["normalize_feature"])}

    def add(name, seed, labels, dim, margin, normalize, spread=1.0, noise=0.6, near=None):
        def make(g):
            f = clustered_features(g, labels, dim, spread, noise)
            if near is not None:  # move sample a next to sample b so a's hinge is active
                a, b = near
                f[a] = f[b] + randn(g, dim, scale=0.3)
            return f

        g, f = clear_features(seed, labels, make, normalize)
        c = make_case(name, {"margin": margin, "normalize_feature": normalize},
                      {"features": f, "labels": labels}, fn, ["features"], g)
        # cross-check with torch's MarginRankingLoss formula
        ff = l2_normalize(f) if normalize else f
        ap, an, _, _ = hard_examples_mining(pairwise_euclidean_distance(ff, ff), same_label_matrix(labels))
        ref = F.margin_ranking_loss(an, ap, torch.ones_like(an), margin=margin)
        assert close(c["outputs"]["output"], ref), name
        assert (ap - an + margin).abs().min() > 1e-3, name  # no hinge at its kink
        cases.append(c)

    add("pk_3x4_margin0.3", 301, pk_labels(3, 4), 8, 0.3, False)
    add("pk_3x4_margin0.3_normalized", 302, pk_labels(3, 4), 8, 0.3, True)
    add("pk_4x3_shuffled_margin1.0", 303, shuffled(_gen(3030), pk_labels(4, 3)), 16, 1.0, False)
    add("pk_2x4_margin0.0", 304, pk_labels(2, 4), 6, 0.0, False, spread=0.5)
    c_single = torch.tensor([0, 0, 0, 1, 1, 1, 2], dtype=torch.int64)
    add("singleton_label_margin1.0", 305, c_single, 5, 1.0, False, near=(6, 0))
    return cases


def group_soft_triplet():
    cases = []

    def fn(t, o):
        return {"output": soft_triplet_loss(t["features_1"], t["features_2"], t["labels"],
                                            o["margin"], o["normalize_feature"])}

    def add(name, seed, labels, dim, margin, normalize, teacher_noise=0.3):
        g, f1 = clear_features(seed, labels, lambda g: clustered_features(g, labels, dim), normalize)
        f2 = f1 + randn(g, *f1.shape, scale=teacher_noise)
        c = make_case(name, {"margin": margin, "normalize_feature": normalize},
                      {"features_1": f1, "features_2": f2, "labels": labels},
                      fn, ["features_1", "features_2"], g)
        assert torch.all(c["grads"]["features_2"] == 0), name
        assert torch.isfinite(c["outputs"]["output"]), name
        cases.append(c)
        return c, f1, f2

    c, f1, f2 = add("soft_pk_3x4", 401, pk_labels(3, 4), 8, None, False)
    # the soft branch really depends on features_2 (through detached targets)
    other = soft_triplet_loss(f1, f1, pk_labels(3, 4), None, False)
    assert not close(other, c["outputs"]["output"], 1e-6)
    add("soft_pk_4x3_shuffled_normalized", 402, shuffled(_gen(4020), pk_labels(4, 3)), 16, None, True)
    add("soft_singleton_label", 403, torch.tensor([0, 0, 1, 1, 1, 2, 0, 1], dtype=torch.int64), 6, None, False)
    c, f1, _ = add("hard_margin0.0_pk_3x4", 404, pk_labels(3, 4), 8, 0.0, False)
    ap, an, _, _ = hard_examples_mining(pairwise_euclidean_distance(f1, f1), same_label_matrix(pk_labels(3, 4)))
    assert close(c["outputs"]["output"], F.softplus(ap - an).mean())
    add("hard_margin0.3_pk_3x4", 405, pk_labels(3, 4), 8, 0.3, False)
    add("hard_margin0.0_singleton_label", 406, torch.tensor([0, 0, 0, 1, 1, 1, 2], dtype=torch.int64), 5, 0.0,
        False)
    c, _, _ = add("hard_margin0.0_all_same_label", 407, torch.zeros(6, dtype=torch.int64), 4, 0.0, False)
    assert c["outputs"]["output"].item() < 1e-300 and torch.all(c["grads"]["features_1"] == 0)
    add("hard_margin0.3_normalized", 408, pk_labels(3, 4), 8, 0.3, True)
    return cases


def group_soft_ce():
    cases = []

    def fn(t, o):
        return {"output": soft_cross_entropy_loss(t["y_logits"], t["target_logits"])}

    def add(name, seed, n, c, scale=1.0, same=False):
        g = _gen(seed)
        y = randn(g, n, c, scale=scale)
        t = y.clone() if same else randn(g, n, c, scale=scale)
        case = make_case(name, {}, {"y_logits": y, "target_logits": t}, fn, ["y_logits", "target_logits"], g)
        assert torch.all(case["grads"]["target_logits"] == 0)
        ref = F.cross_entropy(y, torch.softmax(t, dim=1))
        assert close(case["outputs"]["output"], ref), name
        cases.append(case)
        return case

    add("n8_c5", 501, 8, 5)
    add("n1_c3", 502, 1, 3)
    add("n6_c7_large_logits", 503, 6, 7, scale=20.0)
    c = add("target_equals_y", 504, 5, 4, same=True)
    assert c["grads"]["y_logits"].abs().max() < 1e-15
    return cases


def group_label_smooth():
    cases = []

    def fn(t, o):
        return {"output": cross_entropy_label_smooth(t["logits"], t["labels"], o["num_classes"], o["epsilon"])}

    def add(name, seed, n, c, eps, scale=1.0):
        g = _gen(seed)
        logits = randn(g, n, c, scale=scale)
        labels = torch.randint(0, c, (n,), generator=g, dtype=torch.int64)
        case = make_case(name, {"num_classes": c, "epsilon": eps}, {"logits": logits, "labels": labels},
                         fn, ["logits"], g)
        ref = F.cross_entropy(logits, labels, label_smoothing=eps)
        assert close(case["outputs"]["output"], ref), name
        cases.append(case)

    add("eps0.1_n8_c5", 601, 8, 5, 0.1)
    add("eps0.0_n8_c5", 602, 8, 5, 0.0)
    add("eps0.1_n1_c7", 603, 1, 7, 0.1)
    add("eps0.1_n10_c6_large_logits", 604, 10, 6, 0.1, scale=15.0)
    add("eps0.3_n4_c2", 605, 4, 2, 0.3)
    return cases


def _probs(g, n, c, scale=2.0):
    return torch.softmax(randn(g, n, c, scale=scale), dim=1)


def _consistency_cases(prefix_distance, seed0, with_distance_option):
    cases = []
    distances = ["l2", "l1"] if prefix_distance else ["l2"]

    def fn(t, o):
        return {"output": consistency_loss(t["y"], t["y_teacher"], t["mask"],
                                           o.get("distance", "l2"), o["reduction"])}

    seed = seed0
    for dist in distances:
        for mask_kind in ["ones", "has_zeros", "all_zero"]:
            for red in ["mean", "sum", "none"]:
                seed += 1
                g = _gen(seed)
                n, c = (8, 5) if mask_kind != "has_zeros" else (10, 4)
                y, yt = _probs(g, n, c), _probs(g, n, c)
                assert dist != "l1" or (y - yt).abs().min() > 1e-4  # no |.| kink for l1
                if mask_kind == "ones":
                    mask = torch.ones(n, dtype=DT)
                elif mask_kind == "all_zero":
                    mask = torch.zeros(n, dtype=DT)
                else:
                    mask = (torch.rand(n, generator=g, dtype=DT) < 0.5).to(DT)
                    mask[0], mask[1] = 1.0, 0.0
                opts = {"reduction": red}
                if with_distance_option:
                    opts = {"distance": dist, "reduction": red}
                name = (f"{dist}_" if with_distance_option else "") + f"{red}_mask_{mask_kind}"
                case = make_case(name, opts, {"y": y, "y_teacher": yt, "mask": mask}, fn, ["y", "y_teacher"], g)
                cases.append(case)
                # identities
                per_row = consistency_loss(y, yt, mask, dist, "none")
                assert close(consistency_loss(y, yt, mask, dist, "mean"),
                             consistency_loss(y, yt, mask, dist, "sum") / n)
                if dist == "l2":
                    ref = F.mse_loss(y, yt, reduction="none").sum(dim=1) * mask
                    assert close(per_row, ref)
                if mask_kind == "all_zero":
                    assert torch.all(case["outputs"]["output"] == 0)
                    assert all(torch.all(v == 0) for v in case["grads"].values())
                # teacher gets the opposite gradient (no detach in the reference)
                assert close(case["grads"]["y_teacher"], -case["grads"]["y"], 0)
    return cases


def group_consistency():
    return _consistency_cases(True, 700, True)


def group_l2_consistency():
    return _consistency_cases(False, 800, False)


def group_class_balance():
    cases = []

    def fn(t, o):
        return {"output": class_balance_loss(t["y"], o["num_classes"])}

    def add(name, y):
        n, c = y.shape
        case = make_case(name, {"num_classes": c}, {"y": y}, fn, ["y"], None)
        # self-check against torch's binary_cross_entropy (forward and gradient)
        yy = y.clone().requires_grad_(True)
        ref = F.binary_cross_entropy(yy.mean(dim=0), torch.full((c,), 1.0 / c, dtype=DT))
        (gref,) = torch.autograd.grad(ref, [yy])
        assert close(case["outputs"]["output"], ref, 1e-12), name
        assert close(case["grads"]["y"], gref, 1e-12), name
        cases.append(case)
        return case

    add("n8_c5", _probs(_gen(901), 8, 5))
    add("n1_c4", _probs(_gen(902), 1, 4))
    add("n12_c7", _probs(_gen(903), 12, 7, scale=3.0))
    y = torch.zeros(6, 5, dtype=DT)
    keep = [0, 1, 3, 4]
    y[:, keep] = _probs(_gen(904), 6, 4)
    c = add("class_with_zero_probability", y)
    # log clamp: the zero class contributes -(1/C)*(-100) * (1/C); its gradient is PyTorch's finite 1e-12 clamp
    assert torch.all(torch.isfinite(c["grads"]["y"]))
    assert c["grads"]["y"][:, 2].abs().min() > 1e9
    y = torch.zeros(4, 3, dtype=DT)
    y[:, 1] = 1.0
    c = add("all_rows_same_one_hot", y)
    # classes 0, 2: -(1/3)*(-100); class 1: (1/3 - 1)*(-100); mean over C = 3 -> 400/9
    assert close(c["outputs"]["output"], torch.tensor(400.0 / 9.0, dtype=DT), 1e-12)
    return cases


def group_mcc():
    cases = []

    def fn(t, o):
        return {"output": minimum_class_confusion_loss(t["logits"], o["temperature"])}

    def add(name, seed, n, c, temp, scale=2.0):
        g = _gen(seed)
        logits = randn(g, n, c, scale=scale)
        case = make_case(name, {"temperature": temp}, {"logits": logits}, fn, ["logits"], g)
        loss, m = mcc_parts(logits, temp)
        assert close(loss, 1.0 - torch.trace(m) / c, 1e-12), name
        assert close(m.sum(dim=0), torch.ones(c, dtype=DT), 1e-12), name  # columns sum to 1
        # explicit loop form of the broadcast normalisation M[j,k] / sum_l M[k,l]
        p = torch.softmax(logits / temp, dim=1)
        h = -(p * torch.log(p + 1e-5)).sum(dim=1)
        w = 1.0 + torch.exp(-h)
        w = n * w / w.sum()
        assert close(w.mean(), torch.tensor(1.0, dtype=DT), 1e-12)
        raw = torch.zeros(c, c, dtype=DT)
        for i in range(n):
            raw += w[i] * torch.outer(p[i], p[i])
        loop = torch.empty(c, c, dtype=DT)
        for j in range(c):
            for k in range(c):
                loop[j, k] = raw[j, k] / raw[k, :].sum()
        assert close(loop, m, 1e-12), name
        cases.append(case)
        return case

    add("t2.5_n8_c5", 1001, 8, 5, 2.5)
    add("t1.0_n8_c5", 1002, 8, 5, 1.0)
    add("t2.5_n12_c7", 1003, 12, 7, 2.5)
    add("t2.5_n1_c4", 1004, 1, 4, 2.5)
    c = add("t1.0_n6_c1", 1005, 6, 1, 1.0)
    assert c["outputs"]["output"].item() == 0.0
    add("t1.0_n10_c3_confident", 1006, 10, 3, 1.0, scale=10.0)
    return cases


def group_afn():
    cases = []

    def fn(t, o):
        return {"output": adaptive_feature_norm(t["f"], o["delta"])}

    def add(name, seed, n, d, delta, zero_row=None):
        g = _gen(seed)
        f = randn(g, n, d, scale=1.5)
        if zero_row is not None:
            f[zero_row] = 0.0
        case = make_case(name, {"delta": delta}, {"f": f}, fn, ["f"], g)
        assert close(case["outputs"]["output"], torch.tensor(delta * delta, dtype=DT), 1e-12), name
        norms = f.norm(dim=1, keepdim=True)
        expected = torch.where(norms > 0, -2.0 * delta * f / (n * norms.clamp_min(1e-300)), torch.zeros_like(f))
        assert close(case["grads"]["f"], expected, 1e-12), name
        cases.append(case)
        return case

    add("delta1.0_n8_f16", 1101, 8, 16, 1.0)
    add("delta0.3_n8_f16", 1102, 8, 16, 0.3)
    c = add("delta1.0_zero_row", 1103, 6, 10, 1.0, zero_row=2)
    assert torch.all(c["grads"]["f"][2] == 0)
    add("delta0.3_n1_f5", 1104, 1, 5, 0.3)
    return cases


def group_afn_block():
    cases = []

    def fn(t, o):
        return {"output": afn_block_eval(t["x"], t["fc.weight"], t["fc.bias"], t["bn.weight"], t["bn.bias"],
                                         t["bn.running_mean"], t["bn.running_var"])}

    def add(name, seed, n, fin, dim, p):
        g = _gen(seed)
        inputs = {
            "x": randn(g, n, fin),
            "fc.weight": randn(g, dim, fin, scale=0.5),
            "fc.bias": randn(g, dim, scale=0.1),
            "bn.weight": 1.0 + randn(g, dim, scale=0.2),
            "bn.bias": randn(g, dim, scale=0.3),
            "bn.running_mean": randn(g, dim, scale=0.3),
            "bn.running_var": 0.5 + torch.rand(dim, generator=g, dtype=DT) * 1.5,
        }
        opts = {"in_features": fin, "bottleneck_dim": dim, "dropout_p": p}
        case = make_case(name, opts, inputs, fn, ["x"], g)
        out = case["outputs"]["output"]
        assert (out == 0).any() and (out > 0).any(), name  # ReLU active on both sides
        z = inputs["x"] @ inputs["fc.weight"].t() + inputs["fc.bias"]
        z = (z - inputs["bn.running_mean"]) / torch.sqrt(inputs["bn.running_var"] + 1e-5) * inputs["bn.weight"] \
            + inputs["bn.bias"]
        assert z.abs().min() > 1e-3, name  # no pre-activation at the ReLU kink
        # cross-check against torch.nn modules in eval mode
        lin = torch.nn.Linear(fin, dim).to(DT)
        bn = torch.nn.BatchNorm1d(dim, eps=1e-5).to(DT)
        with torch.no_grad():
            lin.weight.copy_(inputs["fc.weight"])
            lin.bias.copy_(inputs["fc.bias"])
            bn.weight.copy_(inputs["bn.weight"])
            bn.bias.copy_(inputs["bn.bias"])
            bn.running_mean.copy_(inputs["bn.running_mean"])
            bn.running_var.copy_(inputs["bn.running_var"])
        block = torch.nn.Sequential(lin, bn, torch.nn.ReLU(), torch.nn.Dropout(p)).eval()
        with torch.no_grad():
            assert close(block(inputs["x"]), out, 1e-12), name
        cases.append(case)

    add("in6_dim5_n8_p0.5", 1201, 8, 6, 5, 0.5)
    add("in16_dim7_n4_p0.3", 1202, 4, 16, 7, 0.3)
    add("in3_dim4_n1_p0.5", 1203, 1, 3, 4, 0.5)
    return cases


def ema_teacher_trajectory(initial, student_steps, alpha, warmup):
    """Notes 3.3: teacher <- a*teacher + (1-a)*student after every step; with the
    warm-up a_t = min(alpha, 1 - 1/(t+1)) for the 0-based update count t."""
    teacher = initial.clone()
    out = []
    for t, student in enumerate(student_steps):
        a = min(alpha, 1.0 - 1.0 / (t + 1)) if warmup else alpha
        teacher = a * teacher + (1.0 - a) * student
        out.append(teacher.clone())
    return torch.stack(out)


def group_ema_teacher():
    cases = []

    def add(name, seed, p, steps, alpha, warmup):
        g = _gen(seed)
        initial = randn(g, p)
        student_steps = initial + torch.cumsum(randn(g, steps, p, scale=0.1), dim=0)
        out = ema_teacher_trajectory(initial, student_steps, alpha, warmup)
        if warmup:  # the first update copies the student exactly
            assert torch.equal(out[0], student_steps[0]), name
        cases.append({
            "name": name,
            "options": {"alpha": alpha, "warmup": warmup},
            "inputs": {"initial": initial, "student_steps": student_steps},
            "outputs": {"output": out},
            "upstream": torch.ones_like(out),
            "grads": {},
        })

    add("alpha0.99_constant", 1301, 6, 5, 0.99, False)
    add("alpha0.999_warmup", 1302, 6, 12, 0.999, True)
    add("alpha0.5_warmup", 1303, 3, 6, 0.5, True)
    return cases


def group_afn_classifier():
    """AFN ImageClassifier in eval mode with a Linear backbone giving (N, F):
    backbone -> bottleneck (Sequential(Sequential(Block)), Block...) -> head."""
    cases = []

    def block_params(g, prefix, fin, dim):
        return {
            prefix + "fc.weight": randn(g, dim, fin, scale=0.5),
            prefix + "fc.bias": randn(g, dim, scale=0.1),
            prefix + "bn.weight": 1.0 + randn(g, dim, scale=0.2),
            prefix + "bn.bias": randn(g, dim, scale=0.3),
            prefix + "bn.running_mean": randn(g, dim, scale=0.3),
            prefix + "bn.running_var": 0.5 + torch.rand(dim, generator=g, dtype=DT) * 1.5,
        }

    def add(name, seed, n, fin, feat, dim, blocks, classes):
        g = _gen(seed)
        inputs = {"x": randn(g, n, fin),
                  "backbone.weight": randn(g, feat, fin, scale=0.5),
                  "backbone.bias": randn(g, feat, scale=0.1)}
        prefixes = ["bottleneck.0.0."] + [f"bottleneck.{i}." for i in range(1, blocks)]
        widths = [feat] + [dim] * (blocks - 1)
        for prefix, width in zip(prefixes, widths):
            inputs.update(block_params(g, prefix, width, dim))
        inputs["head.weight"] = randn(g, classes, dim, scale=0.5)
        inputs["head.bias"] = randn(g, classes, scale=0.1)

        def fn(t, o):
            f = t["x"] @ t["backbone.weight"].t() + t["backbone.bias"]
            for prefix in prefixes:
                f = afn_block_eval(f, t[prefix + "fc.weight"], t[prefix + "fc.bias"], t[prefix + "bn.weight"],
                                   t[prefix + "bn.bias"], t[prefix + "bn.running_mean"],
                                   t[prefix + "bn.running_var"])
            return {"output": f @ t["head.weight"].t() + t["head.bias"], "features": f}

        opts = {"in_features": fin, "backbone_features": feat, "bottleneck_dim": dim,
                "num_blocks": blocks, "num_classes": classes}
        cases.append(make_case(name, opts, inputs, fn, ["x"], g))

    add("in5_feat6_dim4_blocks1_c3", 1401, 6, 5, 6, 4, 1, 3)
    add("in4_feat8_dim5_blocks3_c7", 1402, 5, 4, 8, 5, 3, 7)
    return cases


GROUPS = [
    ("pairwise_euclidean_distance", group_pairwise),
    ("hard_examples_mining", group_hard_mining),
    ("triplet_loss", group_triplet),
    ("soft_triplet_loss", group_soft_triplet),
    ("soft_cross_entropy_loss", group_soft_ce),
    ("cross_entropy_label_smooth", group_label_smooth),
    ("consistency_loss", group_consistency),
    ("l2_consistency_loss", group_l2_consistency),
    ("class_balance_loss", group_class_balance),
    ("minimum_class_confusion_loss", group_mcc),
    ("adaptive_feature_norm", group_afn),
    ("afn_block_eval", group_afn_block),
    ("ema_teacher", group_ema_teacher),
    ("afn_image_classifier_eval", group_afn_classifier),
]


def validate(data):
    """Schema checks so a malformed file never gets written."""
    for group, cases in data.items():
        names = [c["name"] for c in cases]
        assert len(names) == len(set(names)), group
        for c in cases:
            assert set(c) == {"name", "options", "inputs", "outputs", "upstream", "grads"}, (group, c["name"])
            for v in c["options"].values():
                assert v is None or isinstance(v, (bool, int, float, str)), (group, c["name"])
            for k, v in list(c["inputs"].items()) + list(c["outputs"].items()):
                assert v.dtype in (torch.float64, torch.int64), (group, c["name"], k)
                assert torch.all(torch.isfinite(v.to(DT))), (group, c["name"], k)
            assert c["upstream"].dtype == DT and c["upstream"].shape == c["outputs"]["output"].shape
            for k, v in c["grads"].items():
                assert c["inputs"][k].dtype == DT and v.dtype == DT and v.shape == c["inputs"][k].shape
                assert torch.all(torch.isfinite(v)), (group, c["name"], k)
            for k, v in c["inputs"].items():
                assert k in c["grads"] or v.dtype == torch.int64 or group in (
                    "hard_examples_mining", "consistency_loss", "l2_consistency_loss", "afn_block_eval",
                    "ema_teacher", "afn_image_classifier_eval"), (group, k)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "methods_golden.pt")
    torch.set_default_dtype(DT)
    data = {name: build() for name, build in GROUPS}
    validate(data)
    torch.save(data, out_path)
    loaded = torch.load(out_path)
    assert list(loaded) == [name for name, _ in GROUPS]
    total = sum(len(v) for v in data.values())
    print(f"wrote {out_path}: {len(data)} groups, {total} cases, {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()
