// y = W x for one token, W stored as a row bitmask plus packed bf16 values (see bitmask.py).
//
// Layout of W (C_out x C_in), words = ceil(C_in / 32):
//   mask    uint32 [C_out * words]  bit j of word w of row r set <=> W[r, 32 w + j] != 0
//   values  uint16 [nnz + 32]       the kept weights as bf16 bit patterns, row by row, column order,
//                                   then 32 padding entries (a full-word load may read past the last row)
//   row_ptr int32  [C_out + 1]      offset of each row's first value in `values`
// x and y are float32; products and sums are float32 (bf16 -> fp32 is exact: a 16-bit shift).
//
// Plain C ABI (loaded with ctypes): no Python or torch headers, so the system g++ alone builds it.
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI2__)
#include <immintrin.h>
#define DLP_HAVE_AVX512 1
#else
#define DLP_HAVE_AVX512 0
#endif

static inline float bf16_to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

static float row_scalar(const uint32_t* mask, const uint16_t* v, const float* x, int64_t words) {
    float acc = 0.0f;
    for (int64_t w = 0; w < words; ++w) {
        uint32_t m = mask[w];
        const float* xw = x + 32 * w;
        while (m) {
            int bit = __builtin_ctz(m);
            acc += bf16_to_float(*v++) * xw[bit];
            m &= m - 1;
        }
    }
    return acc;
}

#if DLP_HAVE_AVX512
// Measured on the embedded model's 210 layers at 30% density, one thread (Sapphire Rapids): 512
// bytes ahead reads 6 GB/s, 2048 bytes 8.7 GB/s, 4096 8.3; prefetching the mask stream too was slower.
static constexpr int64_t PREFETCH_BYTES = 2048;
static constexpr int ROWS = 2;  // rows side by side (4 and 8 measured slower: more streams, spills)

// x rearranged once per product so that a word's widened weights meet their x lanes without a
// cross-lane shuffle: unpacklo/unpackhi of the expanded word put the bf16 value of column 8L + i
// (L = 128-bit lane 0..3, i = 0..3) into the high half, i.e. the fp32 bit pattern, of lane 4L + i
// of the lo vector, and that of column 8L + 4 + i into lane 4L + i of the hi vector. Zero past
// the last column, so whole-word loads never read past x.
static void permute_x(const float* x, int64_t cols, int64_t words, float* xp) {
    for (int64_t w = 0; w < words; ++w) {
        for (int L = 0; L < 4; ++L) {
            for (int i = 0; i < 4; ++i) {
                const int64_t c_lo = 32 * w + 8 * L + i, c_hi = c_lo + 4;
                xp[32 * w + 4 * L + i] = c_lo < cols ? x[c_lo] : 0.0f;
                xp[32 * w + 16 + 4 * L + i] = c_hi < cols ? x[c_hi] : 0.0f;
            }
        }
    }
}

// R rows from r0 on, side by side: their value pointers advance independently, so the popcount ->
// pointer -> load chain of one row overlaps the others' (one row alone is latency bound). Per
// 32-column word and row: expand-load the word's popcount values into their 32 16-bit lanes
// (zeros elsewhere), widen to fp32 by interleaving with zeros (the permuted x matches), two FMAs.
// Port 5 (kmov, the expand's 2 uops, two unpacks) bounds it at ~5 cycles per word and row in cache.
template <int R>
static void rows_avx512(const uint32_t* mask, const uint16_t* values, const int32_t* row_ptr, int64_t r0,
                        const float* xp, int64_t words, float* y) {
    const uint16_t* v[R];
    const uint32_t* mk[R];
    __m512 lo[R], hi[R];
    for (int k = 0; k < R; ++k) {
        v[k] = values + row_ptr[r0 + k];
        mk[k] = mask + (r0 + k) * words;
        lo[k] = _mm512_setzero_ps();
        hi[k] = _mm512_setzero_ps();
    }
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t w = 0; w < words; ++w) {
        const __m512 x_lo = _mm512_loadu_ps(xp + 32 * w), x_hi = _mm512_loadu_ps(xp + 32 * w + 16);
        for (int k = 0; k < R; ++k) {
            const uint32_t m = mk[k][w];
            // the hardware prefetcher alone was measured at 5.5 GB/s on these streams: ask ahead
            _mm_prefetch(reinterpret_cast<const char*>(v[k]) + PREFETCH_BYTES, _MM_HINT_T0);
            // a 64-byte load (up to 31 values past the row: the values are padded) then the expand;
            // gcc folds the two into the expand's memory form (forcing the register form measured the same)
            const __m512i packed = _mm512_maskz_expand_epi16(static_cast<__mmask32>(m), _mm512_loadu_si512(v[k]));
            v[k] += __builtin_popcount(m);
            lo[k] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, packed)), x_lo, lo[k]);
            hi[k] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, packed)), x_hi, hi[k]);
        }
    }
    for (int k = 0; k < R; ++k) y[r0 + k] = _mm512_reduce_add_ps(_mm512_add_ps(lo[k], hi[k]));
}
#endif

extern "C" {

// 1 if the vectorised kernel was compiled in (the CPU and compiler support AVX-512 VBMI2).
int dlp_bitmask_has_avx512() { return DLP_HAVE_AVX512; }

// y[r] = sum_c W[r, c] x[c]; `vectorised` 0 forces the scalar loop (tests compare both).
void dlp_bitmask_bf16_gemv(const uint32_t* mask, const uint16_t* values, const int32_t* row_ptr,
                           const float* x, float* y, int64_t rows, int64_t cols, int threads,
                           int vectorised) {
    const int64_t words = (cols + 31) / 32;
    const bool simd = DLP_HAVE_AVX512 && vectorised;
#if DLP_HAVE_AVX512
    if (simd) {
        thread_local std::vector<float> xp;  // the calling thread's; the workers only read it
        xp.resize(static_cast<size_t>(words) * 32);
        permute_x(x, cols, words, xp.data());
        const float* x_perm = xp.data();
        const int64_t groups = rows / ROWS;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t g = 0; g < groups; ++g) rows_avx512<ROWS>(mask, values, row_ptr, g * ROWS, x_perm, words, y);
        for (int64_t r = groups * ROWS; r < rows; ++r) rows_avx512<1>(mask, values, row_ptr, r, x_perm, words, y);
        return;
    }
#endif
    (void)simd;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t r = 0; r < rows; ++r) {
        y[r] = row_scalar(mask + r * words, values + row_ptr[r], x, words);
    }
}

}  // extern "C"
