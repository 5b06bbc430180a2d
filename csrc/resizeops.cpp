// resizeops._C: the op schemas of the compiled kernels and the module stub.
//
// The kernels are registered as ops in the namespace `resizeops_ext` (reach
// them as torch.ops.resizeops_ext.<name>). The public ops, `resizeops::<name>`,
// are defined in Python with torch.library.custom_op (fake kernels, autograd,
// backend choice) and call these. Each device registers its kernels in its own
// file: csrc/cpu/*.cpp (CPU) and csrc/cuda/*.cu (CUDA).
//
// Python.h comes first, as the Python C API requires.
#include <Python.h>

#include <torch/library.h>
#include <torch/version.h>

#include <algorithm>
#include <string>

#ifdef RESIZEOPS_WITH_CUDA
#include <cuda.h>  // CUDA_VERSION: the toolkit the kernels were compiled with
#endif

namespace resizeops {

#ifdef RESIZEOPS_WITH_CUDA
const char* cuda_targets();  // csrc/cuda/query_coords.cu
#endif

namespace {

// "torch=2.14.1;cuda=13.0;cuda_kernels=1;cuda_arch=sm_80,compute_80;debug=0".
// resizeops/core/_extension.py parses it to refuse a .so built against another
// torch (its C++ ABI is not stable across releases: loading one may fail, or
// worse, seem to work), and cuda_arch to refuse a GPU the kernels cannot run on.
std::string build_info() {
  std::string info = "torch=" + std::to_string(TORCH_VERSION_MAJOR) + "." +
                     std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH);
#ifdef RESIZEOPS_WITH_CUDA
  info += ";cuda=" + std::to_string(CUDA_VERSION / 1000) + "." +
          std::to_string((CUDA_VERSION % 1000) / 10);
  info += ";cuda_kernels=1";
  std::string targets = cuda_targets();
  std::replace(targets.begin(), targets.end(), '+', ',');
  info += ";cuda_arch=" + targets;
#else
  info += ";cuda=none;cuda_kernels=0";
#endif
#ifdef RESIZEOPS_DEBUG
  info += ";debug=1";
#else
  info += ";debug=0";
#endif
  return info;
}

}  // namespace
}  // namespace resizeops

TORCH_LIBRARY(resizeops_ext, m) {
  // No tensor arguments, so there is no device to dispatch on: registering the
  // function with the schema makes it a catch-all kernel, runnable as is.
  m.def("build_info() -> str", &resizeops::build_info);

  // Source coordinates of the 2*out_size DynOPool query rows along one axis
  // and their derivative in size_hat (docs/SEMANTICS.md, DynOPool; math in
  // resizeops/math.h):
  // out[j, 0] = clip_border(u_j), out[j, 1] = dclip_j * du_j/d(size_hat).
  // size_hat: 1-element float32/float64 tensor on the target device (its
  // value is read on the device: no host sync). Kernels: csrc/cpu,
  // csrc/cuda/query_coords.*.
  m.def("query_coords(Tensor size_hat, int out_size, int in_size) -> Tensor");

  // Every op below ends with `int[] forms`: the CUDA kernels' forms for this call
  // (csrc/include/resizeops/kernel_forms.h; empty for the defaults), chosen in
  // Python by resizeops/core/kernel_forms.py. The CPU kernels have one form each
  // and only validate it.
  //
  // DynOPool (docs/SEMANTICS.md, DynOPool) at the surrogate size's value
  // (out_h, out_w): the max of 4 bilinear queries per output cell, written
  // contiguous in NCHW or, with channels_last, in channels_last. Kernels:
  // csrc/cpu/dynopool2d.cpp.
  m.def("dynopool2d_forward(Tensor x, int out_h, int out_w, bool channels_last, int[] forms) -> Tensor");
  // Gradients to x (in the format channels_last says; 0 elements unless
  // need_x) and to the surrogate sizes, (dL/dH_hat, dL/dW_hat) as float64 of
  // shape (2,) (zeros unless need_size); Python applies dH_hat/dalpha.
  // Deterministic on the CPU (no atomics, fixed-order sums).
  m.def(
      "dynopool2d_backward(Tensor grad_out, Tensor x, int out_h, int out_w, bool channels_last, "
      "bool need_x, bool need_size, int[] forms) -> (Tensor, Tensor)");

  // resize_blend (docs/SEMANTICS.md, resize_blend): out = w1 * R(x1) + w2 *
  // R(x2), written contiguous in NCHW or, with channels_last, in channels_last.
  // w1, w2: one-element tensors (cast to the accumulation type, as the
  // reference does). scale_k: None or (sh, sw), interpolate's scale_factor
  // followed by a crop to size. Kernels: csrc/cpu/resize_blend.cpp.
  m.def(
      "resize_blend_forward(Tensor x1, Tensor x2, Tensor w1, Tensor w2, int[] size, bool align_corners, "
      "float[]? scale1, float[]? scale2, bool channels_last, int[] forms) -> Tensor");
  // Gradients to (x1, x2, w1, w2): grad_x_k in x_k's dtype and the format
  // x_k_channels_last names (0 elements unless need_x_k); grad_w_k 0-d in w_k's
  // dtype (zero unless need_w_k). Deterministic (no atomics, fixed-order sums).
  m.def(
      "resize_blend_backward(Tensor grad_out, Tensor x1, Tensor x2, Tensor w1, Tensor w2, int[] size, "
      "bool align_corners, float[]? scale1, float[]? scale2, bool need_x1, bool need_x2, bool need_w1, "
      "bool need_w2, bool x1_channels_last, bool x2_channels_last, int[] forms) -> (Tensor, Tensor, Tensor, Tensor)");

  // The Shape Adaptor max-pool op (docs/SEMANTICS.md,
  // shape_adaptor_maxpool): out = w1 * R(max_pool2d(x, 2)) + w2 * R(x), R =
  // bilinear resize to `size` (F.interpolate rules, align_corners as given),
  // without materialising the pooled map; written contiguous in NCHW or, with
  // channels_last, in channels_last. x: H, W >= 2. w1, w2: one-element tensors
  // (cast to the accumulation type). Kernels: csrc/cpu/shape_adaptor_maxpool.cpp,
  // csrc/cuda/shape_adaptor_maxpool.cu.
  m.def(
      "shape_adaptor_maxpool_forward(Tensor x, Tensor w1, Tensor w2, int[] size, bool align_corners, "
      "bool channels_last, int[] forms) -> Tensor");
  // Gradients to (x, w1, w2): grad_x in x's dtype and the format channels_last
  // names (0 elements unless need_x); the pooled branch's gradient goes to the
  // first maximum of each 2x2 window (max_pool2d's rule). grad_w_k 0-d in w_k's
  // dtype (zero unless need_w_k). Deterministic (no atomics, fixed-order sums).
  m.def(
      "shape_adaptor_maxpool_backward(Tensor grad_out, Tensor x, Tensor w1, Tensor w2, int[] size, "
      "bool align_corners, bool need_x, bool need_w1, bool need_w2, bool channels_last, int[] forms) -> (Tensor, Tensor, Tensor)");

  // Test hooks: the CUDA kernels' per-element code (resizeops/dynopool_elements.h)
  // run serially on the CPU, same arguments and results as the two ops above.
  // csrc/cpu/dynopool2d_emulation.cpp; used by tests/test_dynopool2d.py and
  // tests/test_dynopool2d_kernel_forms.py.
  m.def("_dynopool2d_forward_emulated(Tensor x, int out_h, int out_w, bool channels_last, int[] forms) -> Tensor");
  // The form the CUDA forward (and its emulation) takes for these arguments and
  // forms: [form (0 cell, 1 rows, 2 separable), and with separable
  // its plan: th, tw, vcols, tiles_h, tiles_w].
  m.def("_dynopool2d_forward_form(Tensor x, int out_h, int out_w, bool channels_last, int[] forms) -> int[]");
  m.def(
      "_dynopool2d_backward_emulated(Tensor grad_out, Tensor x, int out_h, int out_w, bool channels_last, "
      "bool need_x, bool need_size, int[] forms) -> (Tensor, Tensor)");
  // Likewise the backward's grad_x form: [form (0 gather, 1 scatter, 2 fused), and
  // with fused its plan: th, tw, cell_rows, cell_cols, vcols (0: winners by cells)].
  m.def(
      "_dynopool2d_backward_form(Tensor grad_out, Tensor x, int out_h, int out_w, bool channels_last, "
      "bool need_x, int[] forms) -> int[]");
  // Likewise for the blend kernels (resizeops/blend_elements.h, csrc/cuda/resize_blend.cu and
  // shape_adaptor_maxpool.cu):
  // csrc/cpu/blend_emulation.cpp; used by tests/test_resize_blend.py and
  // tests/test_shape_adaptor_maxpool.py.
  m.def(
      "_resize_blend_forward_emulated(Tensor x1, Tensor x2, Tensor w1, Tensor w2, int[] size, bool align_corners, "
      "float[]? scale1, float[]? scale2, bool channels_last, int[] forms) -> Tensor");
  m.def(
      "_resize_blend_backward_emulated(Tensor grad_out, Tensor x1, Tensor x2, Tensor w1, Tensor w2, int[] size, "
      "bool align_corners, float[]? scale1, float[]? scale2, bool need_x1, bool need_x2, bool need_w1, "
      "bool need_w2, bool x1_channels_last, bool x2_channels_last, int[] forms) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "_shape_adaptor_maxpool_forward_emulated(Tensor x, Tensor w1, Tensor w2, int[] size, bool align_corners, "
      "bool channels_last, int[] forms) -> Tensor");
  m.def(
      "_shape_adaptor_maxpool_backward_emulated(Tensor grad_out, Tensor x, Tensor w1, Tensor w2, int[] size, "
      "bool align_corners, bool need_x, bool need_w1, bool need_w2, bool channels_last, int[] forms) -> (Tensor, Tensor, Tensor)");
}

extern "C" {
// `import resizeops._C` loads this shared library, which runs the static
// TORCH_LIBRARY / TORCH_LIBRARY_IMPL registrations above and in the kernel
// files. The module itself is empty: the ops are reached via torch.ops, so
// there is no pybind11 glue (and the .so can use the limited Python API).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // m_name
      "resizeops compiled kernels; ops live in torch.ops.resizeops_ext",
      -1,    // m_size: no per-module state
      nullptr,  // m_methods
  };
  return PyModule_Create(&module_def);
}
}
