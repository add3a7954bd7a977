/* BLAS on the calling thread only, set around each product, and fork-safe.
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

/* Set the calling thread's BLAS threads to `n`; returns the previous count (0 when there is no
 * setting function). */
static int fr_blas_threads(int n)
{
    if (!fr_blas_set_threads)
        return 0;
    fr_blas_lock_take();
    int previous = fr_blas_set_threads(n);
    fr_blas_lock_give();
    return previous;
}

#endif
