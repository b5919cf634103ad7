#!/usr/bin/env python3
"""Writes the torch.save fixtures of tests/methods/serialization_test.cpp.

Run from the repository root with the project's venv (created by scripts/setup,
or $TANDEM_VENV; torch is pinned in scripts/python-requirements.txt; the python3
on PATH has no torch):

    .venv/bin/python tests/golden/generate_serialization_fixtures.py

The committed fixtures were written by torch 1.13. Files from a newer torch
differ in bytes (extra zip records such as byteorder) but hold the same values.

Each object is saved twice: NAME.zip.pt (the zip format of torch >= 1.6) and
NAME.legacy.pt (_use_new_zipfile_serialization=False, the format of
torchvision's resnet50-19c8e357.pth); misc and shared also as NAME.p4.zip.pt
with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE,
SHORT_BINBYTES). Values follow simple formulas that the C++ test repeats, so
the test hard-codes them rather than reading expectations from a file.
"""

import argparse
import collections
import os

import numpy
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serialization")


class Net(torch.nn.Module):
    """conv.weight (2,1,2,2), bn.* (2) + num_batches_tracked, fc.weight (3,2), fc.bias (3)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 2, bias=False)
        self.bn = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(2, 3)


def make_net():
    """Entry i of the state dict holds arange(numel) * 0.25 + i; num_batches_tracked is 7."""
    net = Net()
    with torch.no_grad():
        for i, (name, tensor) in enumerate(net.state_dict(keep_vars=True).items()):
            if tensor.is_floating_point():
                tensor.copy_(torch.arange(tensor.numel(), dtype=tensor.dtype).view_as(tensor) * 0.25 + i)
            else:
                tensor.fill_(7)
    return net


def objects():
    net = make_net()
    t = torch.arange(10.0)
    shared_list = [1]
    yield "state_dict", net.state_dict()
    yield "state_dict_keep_vars", net.state_dict(keep_vars=True)
    yield "checkpoint", {
        "state_dict": torch.nn.DataParallel(net).state_dict(),
        "epoch": 3,
        "best_mAP": numpy.float64(0.5),
    }
    yield "shared", {"a": t[2:5], "b": t, "c": t.view(2, 5).t()}
    yield "dtypes", {
        "float16": torch.tensor([1.5, -2.0, 65504.0], dtype=torch.float16),
        "bfloat16": torch.tensor([0.5, -3.0, 256.0], dtype=torch.bfloat16),
        "int64": torch.tensor([-(2**40), 0, 2**62], dtype=torch.int64),
        "int32": torch.tensor([[-7, 0], [5, 2**31 - 1]], dtype=torch.int32),
        "int16": torch.tensor([-300, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "uint8": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "float64": torch.tensor([0.1, -1e300], dtype=torch.float64),
        "complex64": torch.tensor([1 + 2j], dtype=torch.complex64),
        "scalar": torch.tensor(3.25),
        "scalar_int": torch.tensor(-4),
        "empty": torch.zeros(0, 3),
        "empty_long": torch.zeros(0, dtype=torch.int64),
    }
    yield "misc", {
        "one": {"only": 1},
        "list": [1, -2, 2.5, None, True, False, "text", [], [7]],
        "tuple": (1, ("a", None), []),
        "empty_tuple": (),
        "ints": [255, 256, 65535, 65536, -1, 2**31 - 1, -(2**31), 2**31, 2**62, -(2**63)],
        "float": -0.125,
        "unicode": "h\u00e9llo \u2713",
        "bytes": b"\x00\xffab",
        "alias_a": shared_list,
        "alias_b": shared_list,
        "int_keys": {1: "one", 2: "two"},
        "namespace": argparse.Namespace(lr=0.1),
        "nested": {"x": {"y": [torch.tensor([1.5, 2.5])]}},
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, obj in objects():
        torch.save(obj, os.path.join(OUT, name + ".zip.pt"))
        torch.save(obj, os.path.join(OUT, name + ".legacy.pt"), _use_new_zipfile_serialization=False)
        if name in ("misc", "shared"):
            torch.save(obj, os.path.join(OUT, name + ".p4.zip.pt"), pickle_protocol=4)


if __name__ == "__main__":
    main()
