/* ContextPairs' loops over words and pairs (multicon/pairs/context.py): subsampling a chunk of
 * the corpus, and writing the (centre, context) pairs of a shuffled group. The tensor ops they
 * replace gather through masks and permutations and expand with repeat_interleave into several
 * temporaries the size of their output; here each word and pair is visited once, so a wider
 * shuffle costs little more than a narrow one. Same words and pairs, in the same order. */
#include <stdint.h>

#define AHEAD 16

/* word2vec's subsampling of corpus tokens start..start+n-1: token i is kept where draw[i] <
 * keep[ids[i]]. Writes the kept ids to kept_ids and the index of each one's sentence to sent
 * (room for n each): offsets[k] is where sentence first + k starts (offsets[0] <= start, and
 * the offsets reach past the last token). With kept_ids NULL it only counts (offsets and sent
 * unused). Returns how many are kept. */
int64_t mc_keep_words(const int32_t *ids, const float *draw, const float *keep, int64_t n,
                      int64_t start, const int64_t *offsets, int64_t first,
                      int32_t *kept_ids, int64_t *sent) {
    int64_t k = 0, s = 0;
    /* branch-free: a token is kept about half the time, so a branch on it mispredicts; each one
       is written at k, and k moves on past the ones kept */
    if (!kept_ids) {
        for (int64_t i = 0; i < n; i++) k += draw[i] < keep[ids[i]];
        return k;
    }
    for (int64_t i = 0; i < n; i++) {
        while (offsets[s + 1] <= start + i) s++;
        kept_ids[k] = ids[i];
        sent[k] = first + s;
        k += draw[i] < keep[ids[i]];
    }
    return k;
}

/* sum(left[order[i]] + right[order[i]]) over i = 0..n-1: the pairs mc_context_pairs writes. */
int64_t mc_context_pair_count(const int64_t *left, const int64_t *right, const int64_t *order,
                              int64_t n) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {
            __builtin_prefetch(left + order[i + AHEAD]);
            __builtin_prefetch(right + order[i + AHEAD]);
        }
        total += left[order[i]] + right[order[i]];
    }
    return total;
}

/* For i = 0..n-1, centre c = centre[order[i]] with L = left[order[i]], R = right[order[i]]
 * words of room: the pairs (kept[c], kept[c-L]) .. (kept[c], kept[c-1]), then (kept[c],
 * kept[c+1]) .. (kept[c], kept[c+R]), into query and key (room for sum(left) + sum(right)
 * pairs of the centres in `order`). */
void mc_context_pairs(const int32_t *kept, const int64_t *centre, const int64_t *left,
                      const int64_t *right, const int64_t *order, int64_t n,
                      int64_t *query, int64_t *key) {
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {  /* the permuted reads miss the cache: start them early */
            int64_t r = order[i + AHEAD];
            __builtin_prefetch(centre + r);
            __builtin_prefetch(left + r);
            __builtin_prefetch(right + r);
        }
        if (i + AHEAD / 2 < n) __builtin_prefetch(kept + centre[order[i + AHEAD / 2]]);
        int64_t p = order[i], q = kept[centre[p]];
        const int32_t *at = kept + centre[p];
        for (int64_t k = -left[p]; k < 0; k++, j++) {
            query[j] = q;
            key[j] = at[k];
        }
        for (int64_t k = 1; k <= right[p]; k++, j++) {
            query[j] = q;
            key[j] = at[k];
        }
    }
}
