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
static constexpr int64_t PREFETCH_BYTES = 512;

// One 32-column word of one row: expand-load the word's popcount values into their 32 lanes
// (zeros elsewhere), widen bf16 -> fp32, multiply with the masked x lanes (absent weights read
// no x: x may end before the word does), accumulate.
static inline void word_fma(uint32_t m, const uint16_t*& v, const float* xw, __m512& acc0, __m512& acc1) {
    // a plain 64-byte load then the register-form expand: the memory-form expand is microcoded
    // on several cores; the load may run up to 31 values past the row (the values are padded)
    __m512i packed = _mm512_maskz_expand_epi16(static_cast<__mmask32>(m), _mm512_loadu_si512(v));
    v += __builtin_popcount(m);
    __m512 w_lo = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm512_castsi512_si256(packed)), 16));
    __m512 w_hi = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(packed, 1)), 16));
    acc0 = _mm512_fmadd_ps(w_lo, _mm512_maskz_loadu_ps(static_cast<__mmask16>(m & 0xFFFFu), xw), acc0);
    acc1 = _mm512_fmadd_ps(w_hi, _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), xw + 16), acc1);
}

// Two rows side by side: their value pointers advance independently, so the popcount ->
// pointer -> load chain of one row overlaps the other's (one row alone is latency bound).
static void row_pair_avx512(const uint32_t* mask0, const uint32_t* mask1, const uint16_t* v0, const uint16_t* v1,
                            const float* x, int64_t words, float* y0, float* y1) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    for (int64_t w = 0; w < words; ++w) {
        const uint32_t m0 = mask0[w], m1 = mask1[w];
        // the hardware prefetcher follows 2 value streams poorly at these strides: ask ahead
        _mm_prefetch(reinterpret_cast<const char*>(v0) + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(v1) + PREFETCH_BYTES, _MM_HINT_T0);
        if (m0) word_fma(m0, v0, x + 32 * w, a0, a1);
        if (m1) word_fma(m1, v1, x + 32 * w, b0, b1);
    }
    *y0 = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    *y1 = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
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
        const int64_t pairs = rows / 2;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t p = 0; p < pairs; ++p) {
            const int64_t r = 2 * p;
            row_pair_avx512(mask + r * words, mask + (r + 1) * words, values + row_ptr[r], values + row_ptr[r + 1],
                            x, words, y + r, y + r + 1);
        }
        if (rows % 2) {  // the odd last row, paired with itself
            const int64_t r = rows - 1;
            float unused;
            row_pair_avx512(mask + r * words, mask + r * words, values + row_ptr[r], values + row_ptr[r], x, words,
                            y + r, &unused);
        }
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
