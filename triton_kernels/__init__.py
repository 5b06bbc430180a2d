"""Triton kernels of resizeops, installed as the subpackage ``resizeops.triton_kernels``."""
