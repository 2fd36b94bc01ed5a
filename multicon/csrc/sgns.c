/* word2vec's skip-gram step with negative sampling, as word2vec.c and gensim run it: for each
 * (centre, context) pair, the context word and `negative` noise words are scored against the
 * centre's input vector and updated at once, then the centre's vector; the next pair sees the
 * updated rows. Threads take contiguous slices of the pairs and share the tables without locks
 * (hogwild, as word2vec's threads). Loaded by multicon/native.py; see docs/word2vec.md. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int mc_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

/* Walker's alias method: O(1) a draw, where word2vec keeps a 1e8-entry table and gensim
 * bisects a cumulative one (the bisection was a third of this kernel's time). */
static inline int64_t draw(const float *prob, const int64_t *alias, int64_t n, uint64_t *s) {
    uint64_t r = xorshift64(s);
    int64_t column = (int64_t)(((r >> 32) * (uint64_t)n) >> 32);
    float coin = (float)(r & 0xFFFFFF) * (1.0f / 16777216.0f);
    return coin < prob[column] ? column : alias[column];
}

/* Vose's construction of the alias table of `weights` (n >= 1, sum > 0). Returns 0, or -1
 * when memory runs out. */
int mc_alias_table(const double *weights, int64_t n, float *prob, int64_t *alias) {
    double *scaled = malloc(n * sizeof(double));
    int64_t *small = malloc(n * sizeof(int64_t)), *large = malloc(n * sizeof(int64_t));
    if (!scaled || !small || !large) { free(scaled); free(small); free(large); return -1; }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += weights[i];
    int64_t ns = 0, nl = 0;
    for (int64_t i = 0; i < n; i++) {
        scaled[i] = weights[i] * n / total;
        alias[i] = i;
        if (scaled[i] < 1) small[ns++] = i; else large[nl++] = i;
    }
    while (ns && nl) {
        int64_t s = small[--ns], l = large[--nl];
        prob[s] = (float)scaled[s];
        alias[s] = l;
        scaled[l] -= 1 - scaled[s];
        if (scaled[l] < 1) small[ns++] = l; else large[nl++] = l;
    }
    while (nl) prob[large[--nl]] = 1.0f;
    while (ns) prob[small[--ns]] = 1.0f;  /* left over only by rounding */
    free(scaled); free(small); free(large);
    return 0;
}

void mc_sample(const float *prob, const int64_t *alias, int64_t n, int64_t count,
               uint64_t seed, int64_t *out) {
    uint64_t s = splitmix64(seed) | 1;
    for (int64_t i = 0; i < count; i++) out[i] = draw(prob, alias, n, &s);
}

static inline void prefetch_row(const float *row, int64_t dim) {
    for (int64_t d = 0; d < dim; d += 16) __builtin_prefetch(row + d, 1, 3);
}

/* the pair's targets: its context word first, then its noise words that differ from it
 * (word2vec skips a noise word equal to the context word); returns how many */
static inline int64_t targets(int64_t i, const int64_t *context, const int64_t *noise,
                              int64_t negative, const float *prob, const int64_t *alias,
                              int64_t vocab, uint64_t *s, int64_t *out) {
    int64_t positive = context[i], m = 0;
    out[m++] = positive;
    for (int64_t j = 0; j < negative; j++) {
        int64_t w = noise ? noise[i * negative + j] : draw(prob, alias, vocab, s);
        if (w != positive) out[m++] = w;
    }
    return m;
}

/* One batch of pairs. `noise` (n x negative) gives the noise words, or NULL to draw them from
 * the alias table. Returns the summed loss, -log σ(s+) - Σ log σ(-s-) over the pairs (each
 * score as the pair met it), or -1 when memory runs out. */
double mc_sgns_step(float *restrict input, float *restrict output, int64_t dim,
                    const int64_t *centre, const int64_t *context, int64_t n,
                    const int64_t *noise, int64_t negative,
                    const float *prob, const int64_t *alias, int64_t vocab,
                    float lr, uint64_t seed, int threads) {
    double loss = 0.0;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(+ : loss) reduction(| : failed)
    {
        int me = 0, team = 1;
#ifdef _OPENMP
        me = omp_get_thread_num();
        team = omp_get_num_threads();
#endif
        uint64_t s = splitmix64(seed ^ splitmix64((uint64_t)me)) | 1;
        float *grad = malloc(dim * sizeof(float));
        int64_t *now = malloc(2 * (negative + 1) * sizeof(int64_t)), *next = now + negative + 1;
        int64_t lo = n * me / team, hi = n * (me + 1) / team;
        if (!grad || !now) {
            failed = 1;
            lo = hi;
        }
        int64_t m_now = lo < hi ? targets(lo, context, noise, negative, prob, alias, vocab, &s, now) : 0;
        for (int64_t i = lo; i < hi; i++) {
            /* the next pair's rows are random: ask for them now, use them a pair later */
            int64_t m_next = 0;
            if (i + 1 < hi) {
                m_next = targets(i + 1, context, noise, negative, prob, alias, vocab, &s, next);
                prefetch_row(input + centre[i + 1] * dim, dim);
                for (int64_t t = 0; t < m_next; t++) prefetch_row(output + next[t] * dim, dim);
            }
            float *q = input + centre[i] * dim;
            float likelihood = 1.0f;
            for (int64_t d = 0; d < dim; d++) grad[d] = 0.0f;
            for (int64_t t = 0; t < m_now; t++) {
                float *k = output + now[t] * dim;
                float score = 0.0f;
#pragma omp simd reduction(+ : score)
                for (int64_t d = 0; d < dim; d++) score += q[d] * k[d];
                float p = 1.0f / (1.0f + expf(-score));
                float label = t == 0 ? 1.0f : 0.0f;
                likelihood *= t == 0 ? p : 1.0f - p;
                float g = (label - p) * lr;
                for (int64_t d = 0; d < dim; d++) {
                    grad[d] += g * k[d];
                    k[d] += g * q[d];
                }
            }
            for (int64_t d = 0; d < dim; d++) q[d] += grad[d];
            /* one log a pair (capped at -log 1e-30 = 69); a NaN stays NaN: divergence is caught */
            loss -= logf(likelihood > 1e-30f || likelihood != likelihood ? likelihood : 1e-30f);
            int64_t *swap = now; now = next; next = swap;
            m_now = m_next;
        }
        free(grad);
        free(now < next ? now : next);
    }
    return failed ? -1.0 : loss;
}
