/* Scratch memory of the kernels' calls (csrc/_kernels.pyx), kept from one call to the next.
 *
 * Why: a call's scratch (a chunk of the input projection, the packed kernels, the states) is
 * often larger than malloc's mmap threshold, so each call mapped fresh pages, took a page fault
 * at the first touch of every 4 KB (150 per call of an LSTM 8x50x32x64), and unmapped them on
 * return, which interrupts every other thread of the process to flush its TLB. Two parts of a
 * batch on two threads (run_parts) then took 1.9x the time of one, not 1.0x.
 *
 * How: blocks under FR_SCRATCH_SMALL bytes, which malloc serves from its free lists without
 * touching the mapping, come from malloc and go back to free. A larger returned block is kept
 * in one of a few slots, up to FR_SCRATCH_KEPT bytes in all, the oldest dropped for a newer one;
 * a request takes the smallest kept block that is large enough and at most FR_SCRATCH_SPARE
 * times as large (so that a small call does not hold a large block that a large one then
 * misses), else a new one from malloc. The
 * slots are shared by all threads under a mutex (held for a few comparisons): concurrent calls
 * never share a block, since a block in use is in no slot. Where there are no POSIX threads,
 * or with FASTRNN_KEEP_SCRATCH=0 in the environment (bench/asan.sh and bench/memcheck.sh, so
 * that a block is never larger than asked for and its old contents never pass for written),
 * blocks go straight back to free.
 */
#ifndef FASTRNN_SCRATCH_H
#define FASTRNN_SCRATCH_H

#include <stdlib.h>
#include <string.h>

#define FR_SCRATCH_SLOTS 8
#define FR_SCRATCH_KEPT ((size_t)64 << 20)
#define FR_SCRATCH_SPARE 4
#define FR_SCRATCH_SMALL ((size_t)64 << 10)

/* A block's usable size sits in front of it, in 16 bytes that keep malloc's alignment. */
#define FR_SCRATCH_HEADER 16

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FR_SCRATCH_KEEPS 1
static struct {
    pthread_mutex_t lock;
    char *blocks[FR_SCRATCH_SLOTS];   /* kept blocks (their headers), NULL for an empty slot */
    unsigned long long given[FR_SCRATCH_SLOTS];   /* when each was given back, in gives */
    unsigned long long gives;         /* blocks kept so far */
    size_t kept;                      /* their sizes, summed */
    size_t limit;                     /* of `kept` */
} fr_scratch = {PTHREAD_MUTEX_INITIALIZER};

/* fork() with the lock held by the forking thread only, so that the child's copy is sane. */
static void fr_scratch_lock(void) { pthread_mutex_lock(&fr_scratch.lock); }
static void fr_scratch_unlock(void) { pthread_mutex_unlock(&fr_scratch.lock); }

/* Call once, before the first take. */
static void fr_scratch_init(void)
{
    const char *keep = getenv("FASTRNN_KEEP_SCRATCH");
    fr_scratch.limit = keep && strcmp(keep, "0") == 0 ? 0 : FR_SCRATCH_KEPT;
    pthread_atfork(fr_scratch_lock, fr_scratch_unlock, fr_scratch_unlock);
}

/* The bytes kept now, for the tests. */
static size_t fr_scratch_kept(void)
{
    pthread_mutex_lock(&fr_scratch.lock);
    size_t kept = fr_scratch.kept;
    pthread_mutex_unlock(&fr_scratch.lock);
    return kept;
}
#else
#define FR_SCRATCH_KEEPS 0
static void fr_scratch_init(void) {}
static size_t fr_scratch_kept(void) { return 0; }
#endif

static inline size_t fr_scratch_size(const char *block)
{
    return *(const size_t *)block;
}

#if FR_SCRATCH_KEEPS
/* The smallest kept block of `size` to FR_SCRATCH_SPARE times `size` bytes, out of its slot, or NULL. */
static char *fr_scratch_find(size_t size)
{
    pthread_mutex_lock(&fr_scratch.lock);
    int best = -1;
    for (int i = 0; i < FR_SCRATCH_SLOTS; i++) {
        char *block = fr_scratch.blocks[i];
        if (block && fr_scratch_size(block) >= size && fr_scratch_size(block) / FR_SCRATCH_SPARE <= size
                && (best < 0 || fr_scratch_size(block) < fr_scratch_size(fr_scratch.blocks[best])))
            best = i;
    }
    char *found = NULL;
    if (best >= 0) {
        found = fr_scratch.blocks[best];
        fr_scratch.blocks[best] = NULL;
        fr_scratch.kept -= fr_scratch_size(found);
    }
    pthread_mutex_unlock(&fr_scratch.lock);
    return found;
}
#endif

/* At least `size` bytes, or NULL when out of memory; give them back with fr_scratch_give. */
static void *fr_scratch_take(size_t size)
{
#if FR_SCRATCH_KEEPS
    char *found = size >= FR_SCRATCH_SMALL ? fr_scratch_find(size) : NULL;   /* small: no lock */
    if (found)
        return found + FR_SCRATCH_HEADER;
#endif
    if (size > (size_t)-1 - FR_SCRATCH_HEADER)
        return NULL;
    char *block = (char *)malloc(FR_SCRATCH_HEADER + size);
    if (!block)
        return NULL;
    *(size_t *)block = size;
    return block + FR_SCRATCH_HEADER;
}

/* Give back what fr_scratch_take returned (NULL is ignored). Blocks under FR_SCRATCH_SMALL go
 * back to free; a larger one is kept, the oldest kept blocks dropped to make room for it (a
 * slot, and the limit on the kept total): the latest is the likeliest to fit the next call. */
static void fr_scratch_give(void *memory)
{
    if (!memory)
        return;
    char *block = (char *)memory - FR_SCRATCH_HEADER;
#if FR_SCRATCH_KEEPS
    size_t size = fr_scratch_size(block);
    if (size < FR_SCRATCH_SMALL || size > fr_scratch.limit) {
        free(block);
        return;
    }
    char *dropped[FR_SCRATCH_SLOTS];
    int n_dropped = 0;
    pthread_mutex_lock(&fr_scratch.lock);
    for (;;) {
        int empty = -1, oldest = -1;
        for (int i = 0; i < FR_SCRATCH_SLOTS; i++) {
            if (!fr_scratch.blocks[i])
                empty = empty < 0 ? i : empty;
            else if (oldest < 0 || fr_scratch.given[i] < fr_scratch.given[oldest])
                oldest = i;
        }
        if (empty >= 0 && fr_scratch.kept + size <= fr_scratch.limit) {
            fr_scratch.blocks[empty] = block;
            fr_scratch.given[empty] = ++fr_scratch.gives;
            fr_scratch.kept += size;
            break;
        }
        /* No room: drop the oldest (there is one: a full table, or a kept total over the limit
         * less this block's size, which is within the limit). */
        dropped[n_dropped++] = fr_scratch.blocks[oldest];
        fr_scratch.kept -= fr_scratch_size(fr_scratch.blocks[oldest]);
        fr_scratch.blocks[oldest] = NULL;
    }
    pthread_mutex_unlock(&fr_scratch.lock);
    for (int i = 0; i < n_dropped; i++)
        free(dropped[i]);
    return;
#else
    free(block);
#endif
}

#endif
