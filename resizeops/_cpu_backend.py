"""Registers the compiled extension's fused C++ CPU kernels with the dispatcher."""
