// The one-token kernels of the lean decoder (lean_decode.py), batch 1, fp32: everything of a
// Llama-style layer but its weight products. Each replaces several small torch ops whose dispatch
// costs (1-12 us each, a few hundred per token) would otherwise sit in both arms of a speed
// comparison and pull every ratio toward 1.
//
// dlp_rope_attend, the attention of one decoded token: rotary embedding of q and k, the token's k
// and v written into the KV cache, then softmax attention of every query head over cache slots
// 0..pos (grouped-query: query head h reads kv head h / (heads / kv_heads)). One call replaces ~25
// small torch ops per layer, whose dispatch cost (~100 us per layer) is as large as a sparse
// layer's weight reads.
//
// Layouts (row-major, contiguous):
//   q    float [heads * D]          rotated in place
//   k    float [kv_heads * D]       rotated in place
//   v    float [kv_heads * D]
//   K, V float [kv_heads * ctx * D] the cache; slot `pos` receives k and v
//   cos, sin float [D]              the rotary tables at position `pos` (HF's rotate_half convention:
//                                   x' = x cos + rotate_half(x) sin, rotate_half(x) = (-x[D/2:], x[:D/2]))
//   out  float [heads * D]
// Dot products keep LANES independent partial sums (vectorisable without reassociation flags),
// so sums run in a fixed order that differs from torch's: results agree to fp32 rounding.
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int LANES = 16;

void rotate(float* x, const float* cos, const float* sin, int64_t n_heads, int64_t D) {
    const int64_t half = D / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        float* r = x + h * D;
        for (int64_t j = 0; j < half; ++j) {
            const float a = r[j], b = r[j + half];
            r[j] = a * cos[j] - b * sin[j];
            r[j + half] = b * cos[j + half] + a * sin[j + half];
        }
    }
}

float dot(const float* a, const float* b, int64_t n) {
    float acc[LANES] = {0.0f};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; ++l) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < n; ++i) s += a[i] * b[i];
    for (int l = 0; l < LANES; ++l) s += acc[l];
    return s;
}

}  // namespace

extern "C" {

void dlp_rope_attend(float* q, float* k, const float* v, float* K, float* V, const float* cos,
                     const float* sin, int64_t pos, int64_t ctx, int64_t heads, int64_t kv_heads,
                     int64_t D, float scale, float* out) {
    rotate(q, cos, sin, heads, D);
    rotate(k, cos, sin, kv_heads, D);
    for (int64_t g = 0; g < kv_heads; ++g)
        for (int64_t d = 0; d < D; ++d) {
            K[(g * ctx + pos) * D + d] = k[g * D + d];
            V[(g * ctx + pos) * D + d] = v[g * D + d];
        }
    thread_local std::vector<float> p;
    p.resize(static_cast<size_t>(pos + 1));
    const int64_t group = heads / kv_heads;
    for (int64_t h = 0; h < heads; ++h) {
        const float* qh = q + h * D;
        const float* Kg = K + (h / group) * ctx * D;
        const float* Vg = V + (h / group) * ctx * D;
        float m = -INFINITY;
        for (int64_t t = 0; t <= pos; ++t) {
            p[t] = scale * dot(qh, Kg + t * D, D);
            m = p[t] > m ? p[t] : m;
        }
        float total = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
            p[t] = std::exp(p[t] - m);
            total += p[t];
        }
        float* o = out + h * D;
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
            const float w = p[t] / total;
            const float* vt = Vg + t * D;
            for (int64_t d = 0; d < D; ++d) o[d] += w * vt[d];
        }
    }
}

// out = h / sqrt(mean(h^2) + eps) * w (RMSNorm, as HF's Llama/Qwen2/Mistral norms in fp32); the mean
// of squares is accumulated in double, so it is at least as accurate as torch's fp32 reduction.
void dlp_rms_norm(const float* h, const float* w, int64_t n, float eps, float* out) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(h[i]) * h[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (h[i] * r);
}

// out = silu(g) * u = g / (1 + exp(-g)) * u, the gated MLP's activation.
void dlp_silu_mul(const float* g, const float* u, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // extern "C"
