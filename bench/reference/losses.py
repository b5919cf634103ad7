"""The self-training losses as the Python originals (TLlib/MMT) compute them.

One copy, shared by the Python twins of the C++ benchmarks:
bench/side_by_side.py (bench_methods) and bench/mmt_step_reference.py
(bench_mmt_step). Every function follows the formula of the MMT reference
notes (shared/reference/mmt_reference_notes.md, section named in each
docstring; API: shared/seed/self_training_methods.txt) with the originals'
sequence of ops (sort-based mining, F.log_softmax, F.binary_cross_entropy,
...), because the benchmarks time exactly that sequence against Tandem's C++
port. Change an op here and the Python column of BENCHMARKS.md, and the
first_loss check against bench_mmt_step, change with it.

Not the golden reference: tests/golden/generate_methods_golden.py keeps its
own independent float64 implementation (argmax mining, logsumexp, PyTorch's
exact BCE gradient), so that the C++ tests are checked against code that is
not the originals' op sequence; its output is not reproducible with these
functions bit for bit.

dtype follows the inputs; labels are an int64 vector (N,).
"""
import torch
import torch.nn.functional as F

__all__ = [
    "pairwise_euclidean_distance", "hard_examples_mining", "soft_triplet_loss",
    "triplet_loss", "soft_cross_entropy", "cross_entropy_label_smooth",
    "l2_consistency", "class_balance", "mcc", "afn",
]


# ---- re-ID losses (MMT, Ge et al., ICLR 2020; TLlib reid/loss.py): notes §3.6 ----
def pairwise_euclidean_distance(x, y):
    """sqrt(clamp(‖x_i‖² + ‖y_j‖² − 2 x_i·y_j, min=1e-12)), (m, d) × (n, d) → (m, n).

    The diagonal of x against x is sqrt(1e-12) = 1e-6, not 0 (notes §3.6, §10).
    """
    d = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1, keepdim=True).t()
    d = torch.addmm(d, x, y.t(), beta=1, alpha=-2)
    return d.clamp(min=1e-12).sqrt()


def hard_examples_mining(dist, same):
    """Hardest positive and negative per row (notes §3.6), the originals' sort form.

    ap = column 0 of sort(dist − 1e7·(1 − S), descending); an = column 0 of
    sort(dist + 1e7·S, ascending); S[i, j] = 1 for the same label (diagonal
    included). Returns (ap, an, ap_index, an_index). torch.sort is not stable:
    on ties the index is the sort's choice.
    """
    ap, ap_index = torch.sort(dist + -1e7 * (1 - same), dim=1, descending=True)
    an, an_index = torch.sort(dist + 1e7 * same, dim=1, descending=False)
    return ap[:, 0], an[:, 0], ap_index[:, 0], an_index[:, 0]


def soft_triplet_loss(f1, f2, labels, margin=None):
    """SoftTripletLoss (MMT eq. 6 with margin 0, eq. 8 with margin None; notes §3.6).

    Mining on the student features f1 only; z_i = log_softmax([ap_i, an_i]).
    margin m: mean_i(−m·z_i0 − (1 − m)·z_i1), f2 unused (callers pass f1 twice).
    margin None: t_i = softmax([D2[i, ap_index_i], D2[i, an_index_i]]) of the
    teacher distances D2 = pairwise(f2, f2), detached; mean_i Σ_k −t_ik·z_ik
    (TLlib's .sum(1).mean()). normalize_feature is left at its default, off.
    """
    n = f1.size(0)
    dist = pairwise_euclidean_distance(f1, f1)
    same = labels.expand(n, n).eq(labels.expand(n, n).t()).float()
    ap, an, ap_i, an_i = hard_examples_mining(dist, same)
    log_prob = F.log_softmax(torch.stack((ap, an), 1), 1)
    if margin is not None:
        return (-margin * log_prob[:, 0] - (1 - margin) * log_prob[:, 1]).mean()
    dist_ref = pairwise_euclidean_distance(f2, f2)
    ap_ref = torch.gather(dist_ref, 1, ap_i.view(n, 1).expand(n, n))[:, 0]
    an_ref = torch.gather(dist_ref, 1, an_i.view(n, 1).expand(n, n))[:, 0]
    t = F.softmax(torch.stack((ap_ref, an_ref), 1), 1).detach()
    return (-t * log_prob).sum(1).mean()


def triplet_loss(f, labels, margin):
    """Batch-hard TripletLoss (notes §3.6): mean_i max(0, ap_i − an_i + margin),
    written as nn.MarginRankingLoss(an, ap, y = 1) as the originals do."""
    n = f.size(0)
    dist = pairwise_euclidean_distance(f, f)
    same = labels.expand(n, n).eq(labels.expand(n, n).t()).float()
    ap, an, _, _ = hard_examples_mining(dist, same)
    return F.margin_ranking_loss(an, ap, torch.ones_like(an), margin=margin)


def soft_cross_entropy(y, target):
    """Soft CrossEntropyLoss / MMT's SoftEntropy (notes §3.6):
    mean_i Σ_c −softmax(target)_ic·log_softmax(y)_ic, target detached, no
    temperature; summed as MMT does, .mean(0).sum()."""
    return (-F.softmax(target, 1).detach() * F.log_softmax(y, 1)).mean(0).sum()


def cross_entropy_label_smooth(y, labels, epsilon=0.1):
    """CrossEntropyLossWithLabelSmooth (notes §3.6): q = (1 − ε)·onehot + ε/C,
    (−q ⊙ log_softmax(y)).mean(0).sum(); C = y.size(1), the current class count."""
    log_probs = F.log_softmax(y, 1)
    targets = torch.zeros_like(log_probs).scatter_(1, labels.unsqueeze(1), 1)
    targets = (1 - epsilon) * targets + epsilon / y.size(1)
    return (-targets * log_probs).mean(0).sum()


# ---- Self-Ensemble (French et al., ICLR 2018): notes §3.1, §3.2 -----------------
def l2_consistency(y, teacher, mask):
    """L2ConsistencyLoss, reduction 'mean' (notes §3.1): mean_i mask_i·Σ_c (y_ic − t_ic)²;
    divides by N, not by Σ mask, and is not nn.MSELoss (no division by C)."""
    return (((y - teacher) ** 2).sum(1) * mask).mean()


def class_balance(y):
    """ClassBalanceLoss (notes §3.2): F.binary_cross_entropy(mean_i y_i, u), u_c = 1/C,
    with PyTorch's log clamp at −100. y holds probabilities, not logits."""
    return F.binary_cross_entropy(y.mean(0), torch.full((y.size(1),), 1.0 / y.size(1)))


# ---- MCC (Jin et al., ECCV 2020): notes §3.4 -------------------------------------
def mcc(logits, temperature=2.5):
    """MinimumClassConfusionLoss (notes §3.4): p = softmax(logits/T); entropy weights
    w_i = 1 + exp(−H_i) (H detached, ε = 1e-5 in the log) scaled to average 1;
    M = (p ⊙ w)ᵀ p; M / M.sum(dim=1) broadcast over the last axis, as the
    original; loss = (Σ M − trace M) / C."""
    n, c = logits.shape
    p = F.softmax(logits / temperature, dim=1)
    h = -(p * torch.log(p + 1e-5)).sum(1).detach()
    w = (1 + torch.exp(-h))
    w = (n * w / w.sum()).unsqueeze(1)
    m = torch.mm((p * w).transpose(1, 0), p)
    m = m / torch.sum(m, dim=1)
    return (torch.sum(m) - torch.trace(m)) / c


# ---- AFN (Xu et al., ICCV 2019): notes §3.5 ---------------------------------------
def afn(f, delta=1.0):
    """Stepwise AdaptiveFeatureNorm (notes §3.5): r_i = ‖f_i‖ (detached) + Δ;
    mean_i (‖f_i‖ − r_i)². The value is always Δ²; the gradient is −2Δ·f_i/(N‖f_i‖)."""
    radius = f.norm(p=2, dim=1).detach() + delta
    return ((f.norm(p=2, dim=1) - radius) ** 2).mean()
