/* BLAS on one thread while fastrnn's products run, and fork-safe.
 *
 * Why: SciPy's OpenBLAS runs a product on several threads of its own; fastrnn splits the work
 * itself, so each BLAS product of a kernel runs on one thread, set before it and restored after
 * with OpenBLAS's openblas_set_num_threads_local (found by fastrnn/backends.py; absent, the
 * BLAS's own setting applies).
 * That function takes OpenBLAS's server lock. A fork() while another thread holds it leaves the
 * child's copy locked, and the child's first BLAS call waits for ever (measured: 11 of 60 forks
 * with three threads running LSTM 64x16x128x256; products without the setting never hung). So
 * the settings are made under a lock of ours, which fork() takes first (pthread_atfork): a fork
 * never lands inside one.
 */
#ifndef FASTRNN_BLAS_THREADS_H
#define FASTRNN_BLAS_THREADS_H

typedef int (*fr_set_threads_function)(int);
static fr_set_threads_function fr_blas_set_threads = 0;

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_mutex_t fr_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static void fr_blas_lock_take(void) { pthread_mutex_lock(&fr_blas_lock); }
static void fr_blas_lock_give(void) { pthread_mutex_unlock(&fr_blas_lock); }

/* Call once, before the first product. */
static void fr_blas_threads_init(void)
{
    pthread_atfork(fr_blas_lock_take, fr_blas_lock_give, fr_blas_lock_give);
}
#else
static void fr_blas_lock_take(void) {}
static void fr_blas_lock_give(void) {}
static void fr_blas_threads_init(void) {}
#endif

/* Products of fastrnn's in BLAS now: while any runs, BLAS runs on one thread; the last one out
 * restores the count the first one in found. The setting is named "local" but is process-wide in
 * SciPy's OpenBLAS: saved and restored by each product, two products at once (two threads of the
 * team, or two callers) left SciPy's BLAS on one thread for the rest of the program. */
static int fr_blas_products = 0, fr_blas_saved = 0;

/* Before a product in BLAS: BLAS on one thread. */
static void fr_blas_enter(void)
{
    if (!fr_blas_set_threads)
        return;
    fr_blas_lock_take();
    int previous = fr_blas_set_threads(1);   /* (this thread's too, where the setting is per thread) */
    if (fr_blas_products++ == 0)
        fr_blas_saved = previous;
    fr_blas_lock_give();
}

/* After it: the count before the first of the products in flight, once none is. */
static void fr_blas_leave(void)
{
    if (!fr_blas_set_threads)
        return;
    fr_blas_lock_take();
    if (--fr_blas_products == 0 && fr_blas_saved > 0)
        fr_blas_set_threads(fr_blas_saved);
    fr_blas_lock_give();
}

#endif
