// Fused multi-head attention for CPUs, forward and backward, as XLA FFI custom calls.
//
// softmax(q k^T * scale + bias) with dropout, times v, computed one (sequence, head) at a time:
// that head's keys are transposed into a small buffer, its [seq, seq] scores go through the
// softmax in a buffer that stays in L2, and the two products are register-tiled. Nothing of size
// [batch, heads, seq, seq] is written to memory. Queries, values and results are read and written
// in place when a head's dim is whole vectors (16 floats), else through padded copies. The
// backward pass recomputes the probabilities from q, k and the forward pass's log-sum-exp
// (FlashAttention-2's recipe).
//
// The dropout mask is cvlib.bert.dropout_keep_mask's hash of the element's flat index in
// [batch, heads, seq, seq], so this kernel and the XLA version drop the same probabilities.
//
// Work is split over XLA's intra-op thread pool by (sequence, head); each is done by one thread
// start to finish, so results do not depend on the number of threads.
//
// Built by `python -m cvlib.cpu_attention build` (make install runs it: g++ -O3 -march=native);
// cvlib.cpu_attention loads it when present.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kW = 16;                                      // floats per vector
typedef float vf __attribute__((vector_size(kW * 4)));      // lowered to AVX-512, AVX2 or SSE
typedef int32_t vi __attribute__((vector_size(kW * 4)));
typedef uint32_t vu __attribute__((vector_size(kW * 4)));
typedef float vfu __attribute__((vector_size(kW * 4), aligned(4)));  // at any float address

inline vf splat(float x) { return vf{} + x; }

inline vf vmax(vf a, vf b) { return a > b ? a : b; }

// Lane-halving reductions (a fixed order, so results do not vary).
inline float hsum(vf x) {
  x += __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  x += __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  x += __builtin_shufflevector(x, x, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  x += __builtin_shufflevector(x, x, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return x[0];
}

inline float hmax(vf x) {
  x = vmax(x, __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  x = vmax(x, __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
  x = vmax(x, __builtin_shufflevector(x, x, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
  x = vmax(x, __builtin_shufflevector(x, x, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
  return x[0];
}

// exp(x) for float32 lanes (Cephes' expf polynomial, ~1 ulp); exactly 0 below -87.3.
inline vf vexp(vf x) {
  const vf lo = splat(-87.33654f), hi = splat(88.72283f);
  vf xc = x < lo ? lo : (x > hi ? hi : x);
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf n = (xc * 1.44269504088896341f + magic) - magic;
  vf r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf y = splat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return x < lo ? splat(0.0f) : y * two_n;
}

inline vu fmix32(vu h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

// Keep-mask of 16 consecutive elements starting at flat index `first` (cvlib.bert._keep_mask).
inline vi keep_lanes(uint32_t first, uint32_t seed0, uint32_t seed1, uint32_t threshold) {
  vu index;
  for (int l = 0; l < kW; ++l) index[l] = first + static_cast<uint32_t>(l);
  vu h = fmix32(index * 0x9E3779B9u + seed0);
  h = fmix32(h ^ seed1);
  return h >= threshold;
}

struct Shape {
  int64_t batch, seq, heads, dim;
  int64_t sv;  // seq rounded up to whole vectors, in vectors
  int64_t dv;  // head_dim rounded up to whole vectors, in vectors
  // Element (b, s, h, d) of a [batch, seq, heads, dim] array.
  int64_t at(int64_t b, int64_t s, int64_t h) const { return ((b * seq + s) * heads + h) * dim; }
};

Shape make_shape(ffi::Span<const int64_t> dims) {
  Shape s{dims[0], dims[1], dims[2], dims[3], 0, 0};
  s.sv = (s.seq + kW - 1) / kW;
  s.dv = (s.dim + kW - 1) / kW;
  return s;
}

struct Dropout {
  uint32_t seed0, seed1, threshold;
  float keep_prob;  // 1 - rate, the divisor of kept values
  bool on;
};

// Two small matrix products, register-tiled: R rows of the result at a time, the rest of the
// operands streamed from L1. "Vectors" are kW floats; "rows" of vectors are padded with zeros.

// C[i][n] = sum_d A[i][d] * Bt[d][n], i < R, n < N vectors from column vector j0:
// A is float rows (stride lda), Bt is [k][sv] vectors, C is [*][sv] vectors.
template <int R, int N>
inline void tile_abt(const float* a, int64_t lda, const vf* bt, int64_t sv, int64_t k,
                     int64_t j0, vf* c) {
  vf acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = vf{};
  for (int64_t d = 0; d < k; ++d) {
    vf bv[N];
    for (int n = 0; n < N; ++n) bv[n] = bt[d * sv + j0 + n];
    for (int r = 0; r < R; ++r) {
      const vf ar = splat(a[r * lda + d]);
      for (int n = 0; n < N; ++n) acc[r][n] += ar * bv[n];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) c[r * sv + j0 + n] = acc[r][n];
}

constexpr int kRows = 4;  // rows per tile of tile_abt; row counts are padded to a multiple of 8

// C = A Bt for rows [0, m) (m a multiple of kRows): C[i] = A[i] (k floats) times Bt ([k][sv]).
// A has `rows` rows (stride lda) and may be the caller's array: the tile that ends past it is
// computed from a zero-padded copy, and C's rows from `rows` on that no tile reaches stay unset.
void product_abt(const float* a, int64_t lda, int64_t rows, const vf* bt, int64_t sv, int64_t k,
                 int64_t m, vf* c) {
  std::vector<float> tail;
  for (int64_t i = 0; i < m && i < rows; i += kRows) {
    const float* ai = a + i * lda;
    int64_t ld = lda;
    if (i + kRows > rows) {
      tail.assign(kRows * k, 0.0f);
      for (int64_t r = 0; r < rows - i; ++r) std::memcpy(&tail[r * k], ai + r * lda, k * 4);
      ai = tail.data();
      ld = k;
    }
    vf* ci = c + i * sv;
    int64_t j0 = 0;
    for (; j0 + 4 <= sv; j0 += 4) tile_abt<kRows, 4>(ai, ld, bt, sv, k, j0, ci);
    switch (sv - j0) {
      case 3: tile_abt<kRows, 3>(ai, ld, bt, sv, k, j0, ci); break;
      case 2: tile_abt<kRows, 2>(ai, ld, bt, sv, k, j0, ci); break;
      case 1: tile_abt<kRows, 1>(ai, ld, bt, sv, k, j0, ci); break;
      default: break;
    }
  }
}

// C[r] = sum_j A(r, j) * B[j], r < R, where A(r, j) = a[r * rs + j * cs] (so A or A transposed),
// B is k rows of DV vectors (stride ldb vectors) and C's rows have stride ldc vectors.
template <int R, int DV>
inline void tile_ab(const float* a, int64_t rs, int64_t cs, const vfu* b, int64_t ldb,
                    int64_t k, vfu* c, int64_t ldc) {
  vf acc[R][DV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < DV; ++v) acc[r][v] = vf{};
  for (int64_t j = 0; j < k; ++j) {
    vf bv[DV];
    for (int v = 0; v < DV; ++v) bv[v] = b[j * ldb + v];
    for (int r = 0; r < R; ++r) {
      const vf ar = splat(a[r * rs + j * cs]);
      for (int v = 0; v < DV; ++v) acc[r][v] += ar * bv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < DV; ++v) c[r * ldc + v] = acc[r][v];
}

// Rows [0, rows) of C = A B, R at a time; the last tile goes through a buffer, so C may be the
// caller's array.
template <int R, int DV>
void product_ab_t(const float* a, int64_t rs, int64_t cs, const vfu* b, int64_t ldb, int64_t k,
                  int64_t rows, vfu* c, int64_t ldc) {
  int64_t i = 0;
  for (; i + R <= rows; i += R) tile_ab<R, DV>(a + i * rs, rs, cs, b, ldb, k, c + i * ldc, ldc);
  if (i < rows) {
    vfu tail[R * DV];
    tile_ab<R, DV>(a + i * rs, rs, cs, b, ldb, k, tail, DV);
    for (int64_t r = 0; r < rows - i; ++r)
      for (int v = 0; v < DV; ++v) c[(i + r) * ldc + v] = tail[r * DV + v];
  }
}

// Rows [0, rows) of C = A B, A(i, j) = a[i * rs + j * cs] with at least R-rounded rows (padding
// rows of P are zero), B k rows of dv vectors (stride ldb), C rows of dv vectors (stride ldc).
void product_ab(const float* a, int64_t rs, int64_t cs, const vfu* b, int64_t ldb, int64_t dv,
                int64_t k, int64_t rows, vfu* c, int64_t ldc) {
  switch (dv) {
    case 1: product_ab_t<8, 1>(a, rs, cs, b, ldb, k, rows, c, ldc); return;
    case 2: product_ab_t<8, 2>(a, rs, cs, b, ldb, k, rows, c, ldc); return;
    case 3: product_ab_t<4, 3>(a, rs, cs, b, ldb, k, rows, c, ldc); return;
    case 4: product_ab_t<4, 4>(a, rs, cs, b, ldb, k, rows, c, ldc); return;
    default:
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t v = 0; v < dv; ++v) {
          vf acc = vf{};
          for (int64_t j = 0; j < k; ++j) acc += splat(a[i * rs + j * cs]) * b[j * ldb + v];
          c[i * ldc + v] = acc;
        }
      }
  }
}

// Per-thread scratch, grown on demand and reused across calls.
struct Scratch {
  std::vector<vf> buf[8];
  vf* get(int i, size_t n) {
    if (buf[i].size() < n) buf[i].resize(n);
    return buf[i].data();
  }
};

thread_local Scratch scratch;

int64_t padded_rows(const Shape& s) { return (s.seq + 7) / 8 * 8; }

// One level of a 16 x 16 transpose: swaps bit S of the row index with bit S of the lane index
// between rows r and r + S (the off-diagonal S x S blocks of each 2S x 2S block).
template <int S, size_t... L>
inline void swap_level(vf& a, vf& b, std::index_sequence<L...>) {
  const vf lo = __builtin_shufflevector(a, b, ((L & S) == 0 ? L : kW + L - S)...);
  const vf hi = __builtin_shufflevector(a, b, ((L & S) == 0 ? L + S : kW + L)...);
  a = lo;
  b = hi;
}

template <int S>
inline void swap_level(vf* m) {
  for (int r = 0; r < kW; ++r)
    if ((r & S) == 0) swap_level<S>(m[r], m[r + S], std::make_index_sequence<kW>());
}

// Head h of sequence b, transposed into [dim][sv] vectors (padding: 0), 16 x 16 at a time.
void load_transposed(const float* src, const Shape& s, int64_t b, int64_t h, vf* t) {
  const float* head = src + s.at(b, 0, h);
  const int64_t stride = s.heads * s.dim;  // from one token to the next
  for (int64_t jv = 0; jv < s.sv; ++jv) {
    for (int64_t d0 = 0; d0 < s.dim; d0 += kW) {
      const int64_t rows = std::min<int64_t>(kW, s.seq - jv * kW);
      const int64_t cols = std::min<int64_t>(kW, s.dim - d0);
      vf m[kW];
      for (int64_t r = 0; r < kW; ++r) {
        m[r] = vf{};
        if (r < rows) std::memcpy(&m[r], head + (jv * kW + r) * stride + d0, cols * sizeof(float));
      }
      swap_level<8>(m);
      swap_level<4>(m);
      swap_level<2>(m);
      swap_level<1>(m);
      for (int64_t c = 0; c < cols; ++c) t[(d0 + c) * s.sv + jv] = m[c];
    }
  }
}

// n floats from src to dst, whole vectors at a time (n is a head's dim: small).
inline void copy_floats(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    vf x;
    std::memcpy(&x, src + i, sizeof(vf));
    std::memcpy(dst + i, &x, sizeof(vf));
  }
  for (; i < n; ++i) dst[i] = src[i];
}

// Head h of sequence b as padded_rows x dv vectors (row-major; padding: 0).
void load_rows(const float* src, const Shape& s, int64_t b, int64_t h, vf* rows) {
  float* rf = reinterpret_cast<float*>(rows);
  const int64_t width = s.dv * kW;
  for (int64_t j = 0; j < s.seq; ++j) {
    copy_floats(rf + j * width, src + s.at(b, j, h), s.dim);
    std::fill(rf + j * width + s.dim, rf + (j + 1) * width, 0.0f);
  }
  std::fill(rows + s.seq * s.dv, rows + padded_rows(s) * s.dv, vf{});
}

void store_rows(const vf* rows, const Shape& s, int64_t b, int64_t h, float* dst) {
  const float* rf = reinterpret_cast<const float*>(rows);
  for (int64_t j = 0; j < s.seq; ++j)
    copy_floats(dst + s.at(b, j, h), rf + j * s.dv * kW, s.dim);
}

void load_bias(const float* bias, const Shape& s, int64_t b, vf* out) {
  float* of = reinterpret_cast<float*>(out);
  for (int64_t j = 0; j < s.sv * kW; ++j) of[j] = j < s.seq ? bias[b * s.seq + j] : -INFINITY;
}

uint32_t first_index(const Shape& s, int64_t b, int64_t h, int64_t i) {
  return static_cast<uint32_t>(((b * s.heads + h) * s.seq + i) * s.seq);  // wraps like JAX's
}

// Rows of head h of sequence b as B operands or results of product_ab: read and written in place
// when a head's dim is whole vectors, else through a zero-padded copy in scratch slot `slot`.
struct HeadRows {
  const Shape& s;
  bool direct;
  int64_t ld;  // vectors from one token's row to the next
  HeadRows(const Shape& shape) : s(shape), direct(shape.dim % kW == 0),
      ld(direct ? shape.heads * shape.dim / kW : shape.dv) {}
  const vfu* in(const float* src, int64_t b, int64_t h, int slot) const {
    if (direct) return reinterpret_cast<const vfu*>(src + s.at(b, 0, h));
    vf* rows = scratch.get(slot, padded_rows(s) * s.dv);
    load_rows(src, s, b, h, rows);
    return rows;
  }
  vfu* out(float* dst, int64_t b, int64_t h, int slot) const {
    if (direct) return reinterpret_cast<vfu*>(dst + s.at(b, 0, h));
    return scratch.get(slot, padded_rows(s) * s.dv);
  }
  void done(const vfu* rows, float* dst, int64_t b, int64_t h) const {
    if (!direct) store_rows(reinterpret_cast<const vf*>(rows), s, b, h, dst);
  }
};

void forward_head(const float* q, const float* k, const float* v, const float* bias,
                  const Shape& s, float scale, const Dropout& drop, bool want_lse, int64_t b,
                  int64_t h, float* out, float* lse) {
  const int64_t m = padded_rows(s), sv = s.sv, dv = s.dv, token = s.heads * s.dim;
  const HeadRows rows(s);
  vf* kt = scratch.get(0, s.dim * sv);
  vf* bias_v = scratch.get(1, sv);
  vf* p = scratch.get(2, m * sv);
  load_transposed(k, s, b, h, kt);
  load_bias(bias, s, b, bias_v);
  product_abt(q + s.at(b, 0, h), token, s.seq, kt, sv, s.dim, m, p);
  for (int64_t i = 0; i < s.seq; ++i) {
    vf* pi = p + i * sv;
    vf mx = splat(-INFINITY);
    for (int64_t jv = 0; jv < sv; ++jv) {
      pi[jv] = pi[jv] * scale + bias_v[jv];
      mx = vmax(mx, pi[jv]);
    }
    const float row_max = hmax(mx);
    vf sum = vf{};
    for (int64_t jv = 0; jv < sv; ++jv) {
      pi[jv] = vexp(pi[jv] - row_max);
      sum += pi[jv];
    }
    const float total = hsum(sum);
    if (want_lse) lse[(b * s.heads + h) * s.seq + i] = row_max + std::log(total);
    const float norm = 1.0f / total, kept_norm = norm / drop.keep_prob;
    if (drop.on) {
      const uint32_t first = first_index(s, b, h, i);
      for (int64_t jv = 0; jv < sv; ++jv) {
        const vi keep = keep_lanes(first + static_cast<uint32_t>(jv * kW), drop.seed0,
                                   drop.seed1, drop.threshold);
        pi[jv] = keep ? pi[jv] * kept_norm : splat(0.0f);
      }
    } else {
      for (int64_t jv = 0; jv < sv; ++jv) pi[jv] = pi[jv] * norm;
    }
  }
  for (int64_t i = s.seq; i < m; ++i) std::fill(p + i * sv, p + (i + 1) * sv, vf{});
  vfu* o = rows.out(out, b, h, 4);
  product_ab(reinterpret_cast<const float*>(p), sv * kW, 1, rows.in(v, b, h, 3), rows.ld, dv,
             s.seq, s.seq, o, rows.ld);
  rows.done(o, out, b, h);
}

void backward_head(const float* q, const float* k, const float* v, const float* o,
                   const float* dout, const float* bias, const float* lse, const Shape& s,
                   float scale, const Dropout& drop, int64_t b, int64_t h, float* dq, float* dk,
                   float* dv) {
  const int64_t m = padded_rows(s), sv = s.sv, nv = s.dv, token = s.heads * s.dim;
  const HeadRows rows(s);
  vf* kt = scratch.get(0, s.dim * sv);
  vf* vt = scratch.get(1, s.dim * sv);
  vf* p = scratch.get(2, m * sv);    // probabilities, then the dropped probabilities
  vf* dp = scratch.get(3, m * sv);   // gradient of the dropped probabilities, then of the scores
  vf* bias_v = scratch.get(4, sv);
  load_transposed(k, s, b, h, kt);
  load_transposed(v, s, b, h, vt);
  load_bias(bias, s, b, bias_v);
  const float inv_keep = 1.0f / drop.keep_prob;
  product_abt(q + s.at(b, 0, h), token, s.seq, kt, sv, s.dim, m, p);
  product_abt(dout + s.at(b, 0, h), token, s.seq, vt, sv, s.dim, m, dp);
  for (int64_t i = 0; i < s.seq; ++i) {
    vf* pi = p + i * sv;
    vf* dpi = dp + i * sv;
    const float* doi = dout + s.at(b, i, h);
    const float* oi = o + s.at(b, i, h);
    float delta = 0.0f;  // rowsum(dO * O) = rowsum(dP * P): the softmax gradient's subtrahend
    for (int64_t d = 0; d < s.dim; ++d) delta += doi[d] * oi[d];
    const float row_lse = lse[(b * s.heads + h) * s.seq + i];
    const uint32_t first = first_index(s, b, h, i);
    for (int64_t jv = 0; jv < sv; ++jv) {
      const vf prob = vexp(pi[jv] * scale + bias_v[jv] - row_lse);
      vf dprob = dpi[jv];
      vf dropped = prob;
      if (drop.on) {
        const vi keep = keep_lanes(first + static_cast<uint32_t>(jv * kW), drop.seed0,
                                   drop.seed1, drop.threshold);
        dropped = keep ? prob * inv_keep : splat(0.0f);
        dprob = keep ? dprob * inv_keep : splat(0.0f);
      }
      pi[jv] = dropped;
      dpi[jv] = prob * (dprob - delta) * scale;
    }
  }
  for (int64_t i = s.seq; i < m; ++i) {  // padding rows contribute nothing to dk, dv
    std::fill(p + i * sv, p + (i + 1) * sv, vf{});
    std::fill(dp + i * sv, dp + (i + 1) * sv, vf{});
  }
  const float* pf = reinterpret_cast<const float*>(p);
  const float* dsf = reinterpret_cast<const float*>(dp);
  const int64_t ld = rows.ld;
  vfu* res = rows.out(dq, b, h, 5);
  product_ab(dsf, sv * kW, 1, rows.in(k, b, h, 6), ld, nv, s.seq, s.seq, res, ld);  // dq = dS K
  rows.done(res, dq, b, h);
  res = rows.out(dk, b, h, 5);
  product_ab(dsf, 1, sv * kW, rows.in(q, b, h, 6), ld, nv, s.seq, s.seq, res, ld);  // dk = dS^T Q
  rows.done(res, dk, b, h);
  res = rows.out(dv, b, h, 5);
  product_ab(pf, 1, sv * kW, rows.in(dout, b, h, 6), ld, nv, s.seq, s.seq, res, ld);  // dv = P^T dO
  rows.done(res, dv, b, h);
}

// Runs fn(item) for item in [0, n) on the calling thread and the pool's. Items are claimed from
// a shared counter; the call returns when all are done (tasks that start late find none left).
template <typename F>
void parallel_for(ffi::ThreadPool& pool, int64_t n, F fn) {
  struct State {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  auto work = [state, n, &fn]() {
    int64_t finished = 0;
    for (int64_t item; (item = state->next.fetch_add(1)) < n;) {
      fn(item);
      ++finished;
    }
    if (finished) {
      std::lock_guard<std::mutex> lock(state->mu);
      state->done += finished;
      if (state->done == n) state->cv.notify_all();
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    // A late task must not touch fn (the caller's frame may be gone): it only sees an
    // exhausted counter, because every item was claimed before the caller returned.
    pool.Schedule([state, n, work]() {
      if (state->next.load() < n) work();
    });
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done == n; });
}

Dropout make_dropout(ffi::Buffer<ffi::U32> seeds, uint32_t threshold, float keep_prob) {
  const uint32_t* sd = seeds.typed_data();
  return Dropout{sd[0], sd[1], threshold, keep_prob, keep_prob < 1.0f};
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                   ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> bias,
                   ffi::Buffer<ffi::U32> seeds, float scale, uint32_t threshold, float keep_prob,
                   bool want_lse, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> lse) {
  if (q.dimensions().size() != 4) return ffi::Error::InvalidArgument("q must be 4-D");
  const Shape s = make_shape(q.dimensions());
  const Dropout drop = make_dropout(seeds, threshold, keep_prob);
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float* bp = bias.typed_data();
  float *op = out->typed_data(), *lp = lse->typed_data();
  parallel_for(pool, s.batch * s.heads, [&](int64_t item) {
    forward_head(qp, kp, vp, bp, s, scale, drop, want_lse, item / s.heads, item % s.heads, op, lp);
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> bias,
                    ffi::Buffer<ffi::U32> seeds, ffi::Buffer<ffi::F32> o,
                    ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout, float scale,
                    uint32_t threshold, float keep_prob, ffi::ResultBuffer<ffi::F32> dq,
                    ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv) {
  const Shape s = make_shape(q.dimensions());
  const Dropout drop = make_dropout(seeds, threshold, keep_prob);
  parallel_for(pool, s.batch * s.heads, [&](int64_t item) {
    backward_head(q.typed_data(), k.typed_data(), v.typed_data(), o.typed_data(),
                  dout.typed_data(), bias.typed_data(), lse.typed_data(), s, scale, drop,
                  item / s.heads, item % s.heads, dq->typed_data(), dk->typed_data(),
                  dv->typed_data());
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CvlibAttentionForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Attr<float>("scale")
                                  .Attr<uint32_t>("threshold")
                                  .Attr<float>("keep_prob")
                                  .Attr<bool>("want_lse")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CvlibAttentionBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Attr<uint32_t>("threshold")
                                  .Attr<float>("keep_prob")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
