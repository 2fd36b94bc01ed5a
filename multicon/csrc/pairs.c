/* The (centre, context) pairs of one shuffled group of ContextPairs (multicon/pairs/context.py),
 * written in one pass. The torch version gathers through the permutation and expands with
 * repeat_interleave into several temporaries the size of the group's pairs; here each pair is
 * written once, so a wider shuffle costs little more than a narrow one. Same pairs, same order. */
#include <stdint.h>

#define AHEAD 16

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
