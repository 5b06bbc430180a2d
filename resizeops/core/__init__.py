"""The ops and what runs them (docs/DESIGN.md, "Map of the code").

``ops.py`` the public op functions and custom ops; ``_validate.py`` argument
checks; ``_dispatch.py`` the backend registry and choice; ``kernel_forms.py`` the
kernels' forms and their named variants; ``reference.py`` the
pure-PyTorch ground truth (the ``reference`` backend); ``_cpu_backend.py``,
``_cuda_backend.py``, ``_triton_backend.py`` the adapters that register the
compiled and Triton kernels; ``_extension.py`` loads ``resizeops._C``;
``_cuda_arch.py`` the GPU architectures (setup.py loads it by path); ``export.py``
the ATen decompositions. ``resizeops`` re-exports the public names, and
``resizeops.ops``, ``resizeops.reference``, ``resizeops.export`` stay importable.
"""
