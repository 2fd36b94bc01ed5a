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

/* In a parallel region: this thread's index and the team's size, and its own random stream
   from `seed` (threads never share a stream). */
static inline uint64_t thread_stream(uint64_t seed, int *me, int *team) {
    *me = 0;
    *team = 1;
#ifdef _OPENMP
    *me = omp_get_thread_num();
    *team = omp_get_num_threads();
#endif
    return splitmix64(seed ^ splitmix64((uint64_t)*me)) | 1;
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
        int me, team;
        uint64_t s = thread_stream(seed, &me, &team);
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

/* ---- HogBatch (Ji et al. 2016): one draw of noise words shared by a window ---------------
 * A run of consecutive pairs with the same centre is that centre's window. As word2vec.c and
 * gensim train a pair, each context word's input row is scored against the centre's output row
 * (label 1) and the window's `negative` noise words (label 0; one equal to the centre is
 * skipped): with I the window's C input rows and O the 1 + K output rows, the scores are
 * S = I Oᵀ, G = lr (label - σ(S)), and both tables move at once from the values the window
 * met: I += G O, O += Gᵀ I. A window touches each random row once, where the per-pair loop
 * fetches the noise rows of every pair: that memory traffic is what this saves. Runs longer
 * than HOGBATCH_RUN pairs are cut into windows of that many. */
#define HOGBATCH_RUN 64

int mc_hogbatch_run(void) { return HOGBATCH_RUN; }

/* the end of the window that starts at pair i (before hi) */
static inline int64_t window_end(const int64_t *centre, int64_t i, int64_t hi) {
    int64_t stop = hi - i > HOGBATCH_RUN ? i + HOGBATCH_RUN : hi, e = i + 1;
    while (e < stop && centre[e] == centre[i]) e++;
    return e;
}

/* the pairs [lo, hi) widened so that no run of equal centres is split between threads */
static inline int64_t run_start(const int64_t *centre, int64_t i, int64_t n) {
    while (i > 0 && i < n && centre[i] == centre[i - 1]) i++;
    return i;
}

/* Small dense products, blocked so each output chunk stays in a register: GCC and clang's
 * vector extension, 8 floats (one AVX register; two SSE ones) a chunk, a scalar tail. A BLAS
 * sgemm costs more in its call than these C <= 10, 1 + K ~ 6, d ~ 100 products take. */
typedef float v8 __attribute__((vector_size(32), aligned(4)));
#define V8(p) (*(v8 *)(p))

static inline float hsum(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* out[t] = x · o[t] for t < m: x's chunk is loaded once for four rows of o */
static inline void scores(const float *x, const float *const *o, int64_t m, int64_t dim,
                          float *out) {
    const int64_t body = dim & ~(int64_t)7;
    int64_t t = 0;
    for (; t + 4 <= m; t += 4) {
        v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t d = 0; d < body; d += 8) {
            v8 xv = V8(x + d);
            a0 += xv * V8(o[t] + d);
            a1 += xv * V8(o[t + 1] + d);
            a2 += xv * V8(o[t + 2] + d);
            a3 += xv * V8(o[t + 3] + d);
        }
        float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
        for (int64_t d = body; d < dim; d++) {
            s0 += x[d] * o[t][d];
            s1 += x[d] * o[t + 1][d];
            s2 += x[d] * o[t + 2][d];
            s3 += x[d] * o[t + 3][d];
        }
        out[t] = s0, out[t + 1] = s1, out[t + 2] = s2, out[t + 3] = s3;
    }
    for (; t < m; t++) {
        v8 a = {0};
        for (int64_t d = 0; d < body; d += 8) a += V8(x + d) * V8(o[t] + d);
        float s = hsum(a);
        for (int64_t d = body; d < dim; d++) s += x[d] * o[t][d];
        out[t] = s;
    }
}

/* y (+)= Σ_j c[j * stride] rows[j] for j < k: y's chunk stays in a register over the k rows
 * (add = 0: y is overwritten) */
static inline void combine(float *y, const float *const *rows, const float *c, int64_t stride,
                           int64_t k, int64_t dim, int add) {
    const int64_t body = dim & ~(int64_t)7;
    for (int64_t d = 0; d < body; d += 8) {
        v8 acc = add ? V8(y + d) : (v8){0};
        for (int64_t j = 0; j < k; j++) acc += c[j * stride] * V8(rows[j] + d);
        V8(y + d) = acc;
    }
    for (int64_t d = body; d < dim; d++) {
        float acc = add ? y[d] : 0.0f;
        for (int64_t j = 0; j < k; j++) acc += c[j * stride] * rows[j][d];
        y[d] = acc;
    }
}

double mc_hogbatch_step(float *restrict input, float *restrict output, int64_t dim,
                        const int64_t *centre, const int64_t *context, int64_t n,
                        const int64_t *noise, int64_t negative,
                        const float *prob, const int64_t *alias, int64_t vocab,
                        float lr, uint64_t seed, int threads) {
    double loss = 0.0;
    int failed = 0;
    const int64_t width = negative + 1;
#pragma omp parallel num_threads(threads) reduction(+ : loss) reduction(| : failed)
    {
        int me, team;
        uint64_t s = thread_stream(seed, &me, &team);
        float *delta = malloc(HOGBATCH_RUN * dim * sizeof(float));
        float *gain = malloc(HOGBATCH_RUN * width * sizeof(float));
        int64_t *now = malloc(2 * width * sizeof(int64_t)), *next = now + width;
        const float **o = malloc(width * sizeof(float *));  /* negative has no upper bound */
        int64_t lo = run_start(centre, n * me / team, n);
        int64_t hi = run_start(centre, n * (me + 1) / team, n);
        if (!delta || !gain || !now || !o) {
            failed = 1;
            lo = hi;
        }
        int64_t i = lo, e_now = lo, m_now = 0;
        if (lo < hi) {
            e_now = window_end(centre, lo, hi);
            m_now = targets(lo, centre, noise, negative, prob, alias, vocab, &s, now);
        }
        while (i < hi) {
            /* the next window's rows are random: ask for them now, use them a window later */
            int64_t e_next = hi, m_next = 0;
            if (e_now < hi) {
                e_next = window_end(centre, e_now, hi);
                m_next = targets(e_now, centre, noise, negative, prob, alias, vocab, &s, next);
                for (int64_t j = e_now; j < e_next; j++) prefetch_row(input + context[j] * dim, dim);
                for (int64_t t = 0; t < m_next; t++) prefetch_row(output + next[t] * dim, dim);
            }
            const int64_t rows = e_now - i;
            float *x[HOGBATCH_RUN];
            for (int64_t r = 0; r < rows; r++) x[r] = input + context[i + r] * dim;
            for (int64_t t = 0; t < m_now; t++) o[t] = output + now[t] * dim;
            for (int64_t r = 0; r < rows; r++) {  /* S, then G, a context row at a time */
                float *g = gain + r * width, likelihood = 1.0f;
                scores(x[r], o, m_now, dim, g);
                for (int64_t t = 0; t < m_now; t++) {
                    float p = 1.0f / (1.0f + expf(-g[t]));
                    likelihood *= t == 0 ? p : 1.0f - p;
                    g[t] = ((t == 0 ? 1.0f : 0.0f) - p) * lr;
                }
                loss -= logf(likelihood > 1e-30f || likelihood != likelihood ? likelihood : 1e-30f);
                /* ΔI = G O, from the outputs the window met */
                combine(delta + r * dim, o, g, 1, m_now, dim, 0);
            }
            for (int64_t t = 0; t < m_now; t++)  /* O += Gᵀ I, from the inputs it met */
                combine((float *)o[t], (const float *const *)x, gain + t, width, rows, dim, 1);
            for (int64_t r = 0; r < rows; r++) {  /* then I += ΔI (a repeated word: both) */
                const float *dx = delta + r * dim;
#pragma omp simd
                for (int64_t d = 0; d < dim; d++) x[r][d] += dx[d];
            }
            i = e_now;
            e_now = e_next;
            int64_t *swap = now; now = next; next = swap;
            m_now = m_next;
        }
        free(delta);
        free(gain);
        free(o);
        free(now < next ? now : next);
    }
    return failed ? -1.0 : loss;
}
