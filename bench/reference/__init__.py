"""Python references shared by the bench/ scripts (imported, never run).

The scripts reach this package with a one-line ``sys.path`` insert of their own
folder (bench/); nothing is installed. It needs only torch, so it works on a
bare CUDA PyTorch as well.
"""
