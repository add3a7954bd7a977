/* A team of threads that run the steps of one recurrence together (csrc/_kernels.pyx).
 *
 * Why: a recurrence of a few rows cannot be split by rows, and each step is a few microseconds:
 * handing a step to a sleeping thread costs tens of microseconds on a VM (an idle vCPU wakes
 * slowly), while two running threads meet at a barrier in 0.06-0.25 us here. So the team's
 * threads split every step's units, meet at a barrier after each step, and spin for a while
 * after a task before they sleep, so that the next call finds them awake.
 *
 * Safety: one caller owns the team at a time; a caller that finds it taken (another thread's
 * call, or fastrnn's own threads at work: fastrnn/parallel.py holds it) runs alone instead of
 * waiting, so nothing waits for the team. A task never fails (its memory is allocated before it
 * starts), so every thread reaches every barrier. A forked child forgets the parent's threads
 * and starts its own. Where there are no POSIX threads the team is the calling thread alone.
 */
#ifndef FASTRNN_TEAM_H
#define FASTRNN_TEAM_H

#include <stdint.h>

typedef void (*fr_task)(void *arg, int id, int n);

#define FR_TEAM_MAX 64

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

/* Workers spin this long after a task before sleeping: calls that follow each other closely
 * (a loop over batches, a benchmark) then find them awake. */
#define FR_SPIN_NS 200000
/* A barrier spins this many rounds, then yields the core between checks: with more threads
 * than free cores, the thread it waits for needs that core. */
#define FR_BARRIER_SPINS 20000

static inline void fr_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static struct {
    pthread_mutex_t lock;            /* with `wake`: for sleeping workers only */
    pthread_cond_t wake;
    atomic_int busy;                 /* 1 while a caller owns the team */
    atomic_int pending;              /* workers still running the current task */
    fr_task task;
    void *arg;
    int n;                           /* threads in the current task, the caller included */
    int workers;                     /* threads started, ids 1 .. workers */
    unsigned born[FR_TEAM_MAX];      /* go[id] when worker id was started */
    /* One more for worker id at each task it takes part in, each on its own cache line: only the
     * workers a task needs wake for it, and the task's fields stay put until they are done. */
    struct {
        _Alignas(64) atomic_uint count;
    } go[FR_TEAM_MAX];
} fr_team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static int64_t fr_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Wait until worker id's go count differs from `seen`: spin, then sleep. */
static unsigned fr_next_task(int id, unsigned seen)
{
    atomic_uint *go = &fr_team.go[id].count;
    int64_t start = fr_now_ns();
    for (unsigned i = 1;; i++) {
        unsigned g = atomic_load_explicit(go, memory_order_acquire);
        if (g != seen)
            return g;
        fr_pause();
        if (i % 256 == 0 && fr_now_ns() - start > FR_SPIN_NS)
            break;
    }
    unsigned g;
    pthread_mutex_lock(&fr_team.lock);
    while ((g = atomic_load(go)) == seen)
        pthread_cond_wait(&fr_team.wake, &fr_team.lock);
    pthread_mutex_unlock(&fr_team.lock);
    return g;
}

static void *fr_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seen = fr_team.born[id];
    for (;;) {
        seen = fr_next_task(id, seen);
        fr_team.task(fr_team.arg, id, fr_team.n);
        atomic_fetch_sub_explicit(&fr_team.pending, 1, memory_order_release);
    }
    return NULL;
}

static void fr_team_forget(void)
{
    /* In a forked child only the forking thread exists: start afresh. */
    pthread_mutex_init(&fr_team.lock, NULL);
    pthread_cond_init(&fr_team.wake, NULL);
    atomic_store(&fr_team.busy, 0);
    atomic_store(&fr_team.pending, 0);
    fr_team.workers = 0;
}

/* Call once, before the first acquire. */
static void fr_team_init(void)
{
    pthread_atfork(NULL, NULL, fr_team_forget);
}

/* Take the team for a task of up to `wanted` threads, starting workers as needed. Returns the
 * number of threads granted, the caller's included; with 1 the team was not taken (it is
 * busy, or no worker could be started) and the caller runs alone without releasing. */
static int fr_team_acquire(int wanted)
{
    int expected = 0;
    if (wanted <= 1 || !atomic_compare_exchange_strong(&fr_team.busy, &expected, 1))
        return 1;
    if (wanted > FR_TEAM_MAX)
        wanted = FR_TEAM_MAX;
    while (fr_team.workers < wanted - 1) {
        int id = fr_team.workers + 1;
        pthread_t thread;
        pthread_attr_t attributes;
        fr_team.born[id] = atomic_load(&fr_team.go[id].count);
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, fr_worker, (void *)(intptr_t)id);
        pthread_attr_destroy(&attributes);
        if (failed)
            break;
        fr_team.workers = id;
    }
    int n = fr_team.workers + 1 < wanted ? fr_team.workers + 1 : wanted;
    if (n == 1)
        atomic_store(&fr_team.busy, 0);
    return n;
}

/* Whether the team is free now: fastrnn/parallel.py takes it while its own threads work. */
static int fr_team_try_hold(void)
{
    int expected = 0;
    return atomic_compare_exchange_strong(&fr_team.busy, &expected, 1);
}

static void fr_team_release(void)
{
    atomic_store(&fr_team.busy, 0);
}

/* Run task(arg, id, n) on threads id = 0 .. n-1 of the acquired team (0 is the caller) and
 * return when all have finished. */
static void fr_team_run(fr_task task, void *arg, int n)
{
    fr_team.task = task;
    fr_team.arg = arg;
    fr_team.n = n;
    atomic_store(&fr_team.pending, n - 1);
    pthread_mutex_lock(&fr_team.lock);
    for (int id = 1; id < n; id++)
        atomic_fetch_add_explicit(&fr_team.go[id].count, 1, memory_order_release);
    pthread_cond_broadcast(&fr_team.wake);
    pthread_mutex_unlock(&fr_team.lock);
    task(arg, 0, n);
    for (unsigned i = 1; atomic_load_explicit(&fr_team.pending, memory_order_acquire) > 0; i++) {
        if (i < FR_BARRIER_SPINS)
            fr_pause();
        else
            sched_yield();
    }
}

/* A barrier for the n threads of a task, used once per step: each thread counts the steps it
 * finished on its own cache line and waits for the others' counts to reach its own. A store to
 * a line of one's own and reads of the others' cost less than a shared counter, which every
 * thread would take in turn (0.5 us per step for two threads on this VM, most of a small step). */
typedef struct {
    _Alignas(64) atomic_llong count;
} fr_barrier_count;

typedef struct {
    fr_barrier_count done[FR_TEAM_MAX];
} fr_barrier;

/* Thread `id` of `n` has finished step *steps (counted from 1): wait until all have. */
static void fr_barrier_wait(fr_barrier *barrier, int id, int n, long long *steps)
{
    long long now = ++*steps;
    atomic_store_explicit(&barrier->done[id].count, now, memory_order_release);
    for (int other = 0; other < n; other++) {
        for (unsigned i = 1; atomic_load_explicit(&barrier->done[other].count, memory_order_acquire) < now; i++) {
            if (i < FR_BARRIER_SPINS)
                fr_pause();
            else
                sched_yield();
        }
    }
}

#else  /* no POSIX threads: the calling thread alone */

typedef struct {
    int unused;
} fr_barrier_count;

typedef struct {
    fr_barrier_count done[FR_TEAM_MAX];
} fr_barrier;

static void fr_team_init(void) {}
static int fr_team_acquire(int wanted) { (void)wanted; return 1; }
static int fr_team_try_hold(void) { return 0; }
static void fr_team_release(void) {}
static void fr_team_run(fr_task task, void *arg, int n) { task(arg, 0, n); }
static void fr_barrier_wait(fr_barrier *barrier, int id, int n, long long *steps) { (void)barrier; (void)id; (void)n; (void)steps; }

#endif
#endif
