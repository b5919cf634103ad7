#!/usr/bin/env python3
"""One MMT iteration in Python, written as the originals write it: the Python
twin of bench_mmt_step (bench/mmt_step_bench.cpp), same flags, same JSON line.

    bench/mmt_step_reference.py [--backbone resnet50|resnet18|small] [--batch 64]
        [--ids-per-batch 16] [--height 256] [--width 128] [--iters 10]
        [--warmup 2] [--threads T] [--classes 500] [--device cpu|cuda]
        [--bf16] [--channels-last] [--seed 1]

Model (notes §3.7, MMT/TLlib's ReidResNet): torchvision's ResNet layout with
the stride of layer4 set to 1 and no ReLU after the stem's bn1, then global
average pooling, a BatchNorm1d neck with frozen bias and a bias-free Linear
head, N(0, 0.001). Losses (notes §3.6, MMT/TLlib's loss.py): sort-based hard
example mining, SoftTripletLoss with margin 0 and without margin,
SoftEntropy, CrossEntropyLabelSmooth, from bench/reference/losses.py (the
one copy, shared with bench/side_by_side.py). Step (notes §4): students on
their own views, EMA teachers on the same views under no_grad, the cross pairing
L = 0.5·CE + 0.2·ST0 + 0.5·SCE + 0.8·ST, Adam(3.5e-4, wd 5e-4) over both
students, then the EMA update with α_t = min(0.999, 1 − 1/(t+1)), and the
terms read back with .item() as the originals' meters do.

Construction follows bench_mmt_step's order of random draws (model 1 from
seed, model 2 from seed + 1, centroids and the four fresh heads from seed + 2,
then the two views), and LibTorch and PyTorch share their CPU generator, so
both programs start from the same weights and inputs: their first_loss
agrees up to float rounding, a check that the two steps are the same.
Needs only torch (no torchvision), so it runs on a bare CUDA PyTorch too.

--parallel-pairs is NOT the originals: it writes Tandem's MmtStep
(worker/train/mmt_step.h) in Python, the two student/teacher pairs on two
threads, to show how much of the C++ figure comes from that order of work
rather than from the language. Its figures are reported separately.
"""
import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- backbones ----------------------------------------------------------------
def conv3x3(inp, out, stride=1):
    return nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)


def conv1x1(inp, out, stride=1):
    return nn.Conv2d(inp, out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inp, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inp, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inp, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inp, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # ResNet v1.5, as torchvision
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ReidResNet(nn.Module):
    """torchvision's ResNet trunk; last stride 1, no stem ReLU (MMT's `# no relu`)."""

    def __init__(self, block, layers, last_stride=1):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], last_stride)
        self.out_features = 512 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x)))  # no relu
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SmallReidNet(nn.Module):
    """Four conv3x3-BN-ReLU stages, strides 2, 2, 2, 1 (methods/models/resnet.h)."""

    def __init__(self, width=16):
        super().__init__()
        layers, inp = [], 3
        for out, stride in ((width, 2), (2 * width, 2), (4 * width, 2), (8 * width, 1)):
            layers += [conv3x3(inp, out, stride), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            inp = out
        self.features = nn.Sequential(*layers)
        self.out_features = 8 * width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.features(x)


class ReIdentifier(nn.Module):
    """backbone -> GAP -> BN neck (bias frozen) -> Linear head without bias (TLlib)."""

    def __init__(self, backbone, num_classes):
        super().__init__()
        self.backbone = backbone
        self.features_dim = backbone.out_features
        self.bottleneck = nn.BatchNorm1d(self.features_dim)
        self.head = nn.Linear(self.features_dim, num_classes, bias=False)
        nn.init.constant_(self.bottleneck.weight, 1)
        nn.init.constant_(self.bottleneck.bias, 0)
        self.bottleneck.bias.requires_grad_(False)
        nn.init.normal_(self.head.weight, 0, 0.001)

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1)
        neck = self.bottleneck(f)
        if not self.training:
            return neck
        return self.head(neck), f


def make_model(backbone, classes):
    if backbone == "resnet50":
        net = ReidResNet(Bottleneck, [3, 4, 6, 3])
    elif backbone == "resnet18":
        net = ReidResNet(BasicBlock, [2, 2, 2, 2])
    else:
        net = SmallReidNet()
    return ReIdentifier(net, classes)


# ---- losses, as MMT / TLlib write them (one copy, bench/reference/losses.py) ---
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/reference
from reference.losses import (  # noqa: E402
    cross_entropy_label_smooth, soft_cross_entropy, soft_triplet_loss)


@torch.no_grad()
def ema_update(teacher, student, step, alpha=0.999):
    a = min(alpha, 1 - 1 / (step + 1))
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.data.mul_(a).add_(s.data, alpha=1 - a)


# ---- not the originals: Tandem's MmtStep written in Python ---------------------
def parallel_step(models, teachers, views, labels, state):
    """--parallel-pairs: what worker/train/mmt_step.cpp does, in Python, to see
    how much of the C++ figure is the order of work rather than the language.
    Pair i (teacher i forward, student i forward, its loss against the other
    teacher's outputs, backward, its own Adam, EMA of teacher i) runs on
    thread i with half of the intra-op threads; the GIL is released inside
    every ATen op. Returns the step function."""
    import concurrent.futures
    import threading

    total_threads = torch.get_num_threads()
    shares = ((total_threads + 1) // 2, total_threads // 2)
    ready = threading.Barrier(2)

    def init(share_queue):
        torch.get_num_threads()  # the thread's lazy OpenMP init first
        torch.set_num_threads(share_queue.pop())
        ready.wait()

    pool = concurrent.futures.ThreadPoolExecutor(2, initializer=init,
                                                 initargs=(list(shares),))
    list(pool.map(lambda _: None, range(2)))  # start both threads
    torch.set_num_threads(total_threads)  # the process default, as before
    optimizers = [torch.optim.Adam([p for p in m.parameters() if p.requires_grad],
                                   lr=3.5e-4, weight_decay=5e-4) for m in models]
    w_id, w_tri = 0.5, 0.8

    def step():
        outputs = [None, None]
        teachers_done = threading.Barrier(2)
        terms = [None, None]

        def pair(i):
            with torch.no_grad():
                outputs[i] = teachers[i](views[i])
            logits, features = models[i](views[i])
            teachers_done.wait()
            t_logits, t_features = outputs[1 - i]
            ce = cross_entropy_label_smooth(logits, labels)
            tri = soft_triplet_loss(features, features, labels, margin=0.0)
            sce = soft_cross_entropy(logits, t_logits)
            stri = soft_triplet_loss(features, t_features, labels)
            total = (1 - w_id) * ce + (1 - w_tri) * tri + w_id * sce + w_tri * stri
            optimizers[i].zero_grad()
            total.backward()
            optimizers[i].step()
            ema_update(teachers[i], models[i], state["step"])
            terms[i] = torch.stack([ce, tri, sce, stri]).detach()

        list(pool.map(pair, range(2)))
        state["step"] += 1
        ce, tri, sce, stri = (terms[0] + terms[1]).tolist()
        state["read_back"] += ce + tri + sce + stri
        state["total"] = (1 - w_id) * ce + (1 - w_tri) * tri + w_id * sce + w_tri * stri

    return step


# ---- the benchmark ------------------------------------------------------------
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", choices=["resnet50", "resnet18", "small"], default="resnet50")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ids-per-batch", type=int, default=16)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="CUDA autocast in bfloat16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parallel-pairs", action="store_true",
                   help="NOT the originals: Tandem's MmtStep order in Python (two threads)")
    a = p.parse_args(argv)
    if a.ids_per_batch < 2 or a.batch % a.ids_per_batch or a.batch < 2 * a.ids_per_batch:
        p.error("--batch must be a multiple of --ids-per-batch with P >= 2, K >= 2")
    if a.classes < a.ids_per_batch:
        p.error("--classes must be at least --ids-per-batch")
    if a.iters < 1 or a.warmup < 0:
        p.error("--iters >= 1, --warmup >= 0")
    if a.bf16 and a.device != "cuda":
        p.error("--bf16 (CUDA autocast) needs --device cuda")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but this PyTorch has no usable CUDA device")
    return a


def main(argv=None):
    a = parse(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    device = torch.device(a.device)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format

    torch.manual_seed(a.seed)
    model_1 = make_model(a.backbone, a.classes)
    torch.manual_seed(a.seed + 1)
    model_2 = make_model(a.backbone, a.classes)
    for m in (model_1, model_2):
        m.to(device=device, memory_format=memory_format)
    teachers = []
    for m in (model_1, model_2):
        t = copy.deepcopy(m)
        for p in t.parameters():
            p.requires_grad_(False)
        teachers.append(t)
    teacher_1, teacher_2 = teachers

    # Epoch start: every head from the L2-normalised centroids (TLlib replaces
    # the head by a fresh Linear and copies the centres into it).
    torch.manual_seed(a.seed + 2)
    centres = F.normalize(torch.randn(a.classes, model_1.features_dim), dim=1)
    for m in (model_1, model_2, teacher_1, teacher_2):
        requires_grad = m.head.weight.requires_grad
        m.head = nn.Linear(m.features_dim, a.classes, bias=False).to(device)
        m.head.weight.data.copy_(centres)
        m.head.weight.requires_grad_(requires_grad)

    k = a.batch // a.ids_per_batch
    shape = (a.batch, 3, a.height, a.width)
    x1 = torch.randn(*shape).to(device).contiguous(memory_format=memory_format)
    x2 = torch.randn(*shape).to(device).contiguous(memory_format=memory_format)
    labels = torch.arange(a.ids_per_batch).repeat_interleave(k).to(device)

    params = [p for m in (model_1, model_2) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4)
    w_id, w_tri = 0.5, 0.8
    for m in (model_1, model_2, teacher_1, teacher_2):
        m.train()
    state = {"step": 0, "total": 0.0, "read_back": 0.0}

    def autocast():
        if a.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        with autocast():
            s1_logits, s1_features = model_1(x1)
            s2_logits, s2_features = model_2(x2)
            with torch.no_grad():
                t1_logits, t1_features = teacher_1(x1)
                t2_logits, t2_features = teacher_2(x2)
        s1_logits, s1_features = s1_logits.float(), s1_features.float()
        s2_logits, s2_features = s2_logits.float(), s2_features.float()
        t1_logits, t1_features = t1_logits.float(), t1_features.float()
        t2_logits, t2_features = t2_logits.float(), t2_features.float()
        ce = (cross_entropy_label_smooth(s1_logits, labels)
              + cross_entropy_label_smooth(s2_logits, labels))
        triplet = (soft_triplet_loss(s1_features, s1_features, labels, margin=0.0)
                   + soft_triplet_loss(s2_features, s2_features, labels, margin=0.0))
        soft_ce = (soft_cross_entropy(s1_logits, t2_logits)
                   + soft_cross_entropy(s2_logits, t1_logits))
        soft_tri = (soft_triplet_loss(s1_features, t2_features, labels)
                    + soft_triplet_loss(s2_features, t1_features, labels))
        total = (1 - w_id) * ce + (1 - w_tri) * triplet + w_id * soft_ce + w_tri * soft_tri
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        ema_update(teacher_1, model_1, state["step"])
        ema_update(teacher_2, model_2, state["step"])
        state["step"] += 1
        state["read_back"] += ce.item() + triplet.item() + soft_ce.item() + soft_tri.item()
        state["total"] = total.item()

    if a.parallel_pairs and not cuda and torch.get_num_threads() >= 2:
        step = parallel_step((model_1, model_2), (teacher_1, teacher_2), (x1, x2), labels, state)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    first = None
    for _ in range(a.warmup):
        step()
        first = state["total"] if first is None else first
    sync()
    times = []
    for _ in range(a.iters):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
        first = state["total"] if first is None else first
    mean = sum(times) / len(times)
    memory = {}
    if cuda:  # this rank's peak GPU memory, as bench_mmt_step reports it
        memory = {"peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(),
                  "peak_gpu_reserved_bytes": torch.cuda.max_memory_reserved()}
    print(json.dumps({
        "side": "python", "backbone": a.backbone, "batch": a.batch,
        "ids_per_batch": a.ids_per_batch, "height": a.height, "width": a.width,
        "classes": a.classes, "iters": a.iters, "warmup": a.warmup,
        "threads": torch.get_num_threads(), "device": a.device, "bf16": a.bf16,
        "channels_last": a.channels_last, "torch": torch.__version__,
        "images_per_second": a.batch / mean, "seconds_per_iter": mean,
        "median_seconds_per_iter": statistics.median(times), "min_seconds_per_iter": min(times),
        "first_loss": first, "last_loss": state["total"], "times": times,
        "parallel_pairs": a.parallel_pairs and not cuda and torch.get_num_threads() >= 2,
        **memory,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
