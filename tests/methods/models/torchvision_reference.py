#!/usr/bin/python3
"""Python side of the model tests: torchvision ResNets with MMT's re-ID
changes (last stride 1, no ReLU after the stem BN), run by Debian's
python3-torch and python3-torchvision.

    torchvision_reference.py export DIR ARCH FORMAT
        writes DIR/weights.pth (torch.save of model.state_dict(), FORMAT zip
        or legacy) and DIR/reference.pt ({"input", "output"}).
    torchvision_reference.py check DIR ARCH
        loads DIR/tandem_weights.pt (written by Tandem's save_state_dict) with
        load_state_dict(strict=False), requires that only fc.* is missing and
        nothing unexpected, and compares the model's output on
        DIR/tandem_io.pt["input"] with DIR/tandem_io.pt["output"].
"""
import sys

import torch
import torchvision


def reid_resnet(arch):
    model = getattr(torchvision.models, arch)()
    model.layer4[0].conv2.stride = (1, 1)
    if model.layer4[0].downsample is not None:
        model.layer4[0].downsample[0].stride = (1, 1)
    if arch in ("resnet18", "resnet34"):
        model.layer4[0].conv1.stride = (1, 1)
    return model.eval()


def trunk(model, x):
    """conv1 → bn1 → maxpool → layer1..4: no stem ReLU, no pooling, no fc."""
    x = model.maxpool(model.bn1(model.conv1(x)))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def export(folder, arch, fmt):
    torch.manual_seed(0)
    model = reid_resnet(arch)
    with torch.no_grad():  # non-trivial BN statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        y = trunk(model, x)
    torch.save(model.state_dict(), f"{folder}/weights.pth",
               _use_new_zipfile_serialization=(fmt == "zip"))
    torch.save({"input": x, "output": y}, f"{folder}/reference.pt")


def check(folder, arch):
    model = reid_resnet(arch)
    state = torch.load(f"{folder}/tandem_weights.pt")
    result = model.load_state_dict(state, strict=False)
    missing = sorted(result.missing_keys)
    if missing != ["fc.bias", "fc.weight"] or result.unexpected_keys:
        print(f"missing {missing} unexpected {result.unexpected_keys}")
        return 1
    io = torch.load(f"{folder}/tandem_io.pt")
    with torch.no_grad():
        y = trunk(model, io["input"])
    if not torch.allclose(y, io["output"], rtol=1e-4, atol=1e-4):
        print(f"outputs differ: max abs error {(y - io['output']).abs().max().item()}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(check(sys.argv[2], sys.argv[3]))
