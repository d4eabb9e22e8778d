// The transpose of a float32 matrix, for XLA:CPU, registered with JAX through the XLA FFI.
//
// Why: a Dense layer wider in than out gets its kernel gradient as (out, in) (models/dense.py)
// and transposes it once into the kernel's (in, out) layout; XLA:CPU's transpose ran at ~2.7x
// the time of a copy of the same matrix (e.g. 4.3 ms against 1.6 for 512 x 2048), ~34 ms per
// ViT-S step in all. Here 16 x 16 tiles are transposed in registers (TransposeTile), so every
// load and store is a whole vector; the edges of a matrix whose sides are not multiples of 16
// go element by element.
#include <algorithm>
#include <cstdint>

#include "cpu_common.h"

namespace {

using namespace msm_jax;  // NOLINT: the shared vector type and helpers

constexpr int64_t kTaskRows = 256;  // per task: 256 rows x 16 columns in, 16 rows of x^T out

ffi::Error Transpose(ffi::ThreadPool pool, F32 x, F32Out y) {
  const auto dims = x.dimensions();
  if (dims.size() != 2) return ffi::Error::InvalidArgument("msm_transpose: x must be 2-D");
  const int64_t rows = dims[0], columns = dims[1];
  const float* src = x.typed_data();
  float* dst = y->typed_data();
  // Tasks own 16 rows of the result and fill them left to right: the writes stream, the reads
  // (16 floats from each of 16 rows) are the strided side.
  const int64_t strips = (columns + kWidth - 1) / kWidth;
  const int64_t blocks = (rows + kTaskRows - 1) / kTaskRows;
  ParallelFor(pool, strips * blocks, [&](int64_t task) {
    const int64_t j0 = task / blocks * kWidth, first = task % blocks * kTaskRows;
    const int64_t last = std::min(rows, first + kTaskRows);
    int64_t i0 = first;
    if (j0 + kWidth <= columns)
      for (; i0 + kWidth <= last; i0 += kWidth) {
        Vec tile[kWidth];
        for (int r = 0; r < kWidth; ++r) tile[r] = Load(src + (i0 + r) * columns + j0);
        TransposeTile(tile);
        for (int r = 0; r < kWidth; ++r) Store(dst + (j0 + r) * rows + i0, tile[r]);
      }
    // What the tiles left: the block's last rows, or all of a last strip under 16 columns.
    for (int64_t j = j0; j < std::min(columns, j0 + kWidth); ++j)
      for (int64_t i = i0; i < last; ++i) dst[j * rows + i] = src[i * columns + j];
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MsmTranspose, Transpose,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x (rows, columns)
                                  .Ret<F32>());  // x^T (columns, rows)
