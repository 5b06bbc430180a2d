"""Registers the Triton kernels (triton_kernels/, installed as resizeops.triton_kernels) with the dispatcher."""
