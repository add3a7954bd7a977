/* A team of threads that run the steps of one recurrence together (csrc/_kernels.pyx).
 *
 * Why: a recurrence of a few rows cannot be split by rows, and each step is a few microseconds:
 * handing a step to a sleeping thread costs tens of microseconds on a VM (an idle vCPU wakes
 * slowly), while two running threads meet in 0.06-0.25 us here. So each step is cut into parts
 * (slices of the units), one per thread, and workers spin for a while after a task before they
 * sleep, so that the next call finds them awake.
 *
 * Work is claimed, not assigned (fr_queue): each thread claims its own part of a step, then any
 * part no thread has claimed, so a thread that is late (asleep, or its core taken by another
 * process) holds up nothing it has not claimed, and the caller alone finishes the task if no
 * worker comes; only a worker preempted just as it enters delays the end of the call, until it
 * runs again. (With parts assigned and a barrier, every step waited for the slowest thread:
 * calls ran up to 7x slower than on one thread while a worker woke.)
 *
 * Safety: one caller owns the team at a time; a caller that finds it taken (another thread's
 * call, or fastrnn's own threads at work: fastrnn/parallel.py holds it) runs alone instead of
 * waiting, so nothing waits for the team. A task never fails (its memory is allocated before it
 * starts). A worker enters a task only while it is open, and the caller closes it and waits for
 * the workers inside before its memory goes. A forked child forgets the parent's threads and
 * starts its own. Where there are no POSIX threads the team is the calling thread alone.
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
/* A wait spins this many rounds, then yields the core between checks: with more threads than
 * free cores, the thread it waits for needs that core. */
#define FR_WAIT_SPINS 20000

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
    atomic_int open;                 /* 1 while workers may enter the current task */
    atomic_int inside;               /* workers in the current task */
    fr_task task;
    void *arg;
    int n;                           /* threads in the current task, the caller included */
    int workers;                     /* threads started, ids 1 .. workers */
    unsigned born[FR_TEAM_MAX];      /* go[id] when worker id was started */
    /* One more for worker id at each task it is asked to, each on its own cache line, so that
     * the workers a task needs wake for it. (A worker that wakes late may enter a later task
     * that did not ask it: harmless, as a task gives ids no meaning beyond where to start.) */
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
        /* Entered only while open: once closed, the task's memory may be gone (the order of
         * these two and of the caller's two in fr_team_run makes one see the other). */
        atomic_fetch_add(&fr_team.inside, 1);
        if (atomic_load(&fr_team.open))
            fr_team.task(fr_team.arg, id, fr_team.n);
        atomic_fetch_sub_explicit(&fr_team.inside, 1, memory_order_release);
    }
    return NULL;
}

/* fork() with the lock held by none but the forking thread, so that the child's copy is sane. */
static void fr_team_before_fork(void)
{
    pthread_mutex_lock(&fr_team.lock);
}

static void fr_team_after_fork_in_parent(void)
{
    pthread_mutex_unlock(&fr_team.lock);
}

static void fr_team_forget(void)
{
    /* In a forked child only the forking thread exists: start afresh. */
    pthread_mutex_unlock(&fr_team.lock);
    pthread_mutex_init(&fr_team.lock, NULL);
    pthread_cond_init(&fr_team.wake, NULL);
    atomic_store(&fr_team.busy, 0);
    atomic_store(&fr_team.open, 0);
    atomic_store(&fr_team.inside, 0);
    fr_team.workers = 0;
}

/* Call once, before the first acquire. */
static void fr_team_init(void)
{
    pthread_atfork(fr_team_before_fork, fr_team_after_fork_in_parent, fr_team_forget);
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

/* Run task(arg, id, n) on the caller (id 0) and on workers 1 .. n-1 of the acquired team as they
 * come, and return when the caller's has returned and no worker is inside it. The task must
 * let any thread that enters do any part of the work, and the caller's return only when all of
 * it is done (fr_queue below). */
static void fr_team_run(fr_task task, void *arg, int n)
{
    fr_team.task = task;
    fr_team.arg = arg;
    fr_team.n = n;
    atomic_store(&fr_team.open, 1);
    pthread_mutex_lock(&fr_team.lock);
    for (int id = 1; id < n; id++)
        atomic_fetch_add_explicit(&fr_team.go[id].count, 1, memory_order_release);
    pthread_cond_broadcast(&fr_team.wake);
    pthread_mutex_unlock(&fr_team.lock);
    task(arg, 0, n);
    atomic_store(&fr_team.open, 0);
    for (unsigned i = 1; atomic_load(&fr_team.inside) > 0; i++) {
        if (i < FR_WAIT_SPINS)
            fr_pause();
        else
            sched_yield();
    }
}

/* The work of a task: `lanes` sequences of items (a slice's weights, then its part of each
 * step), each lane preferably done by its own thread, which keeps the lane's data in its cache;
 * a thread that finds a lane's item unclaimed when it has done its own takes it (the lane's
 * thread is late). An item may need all items of earlier rounds complete (a step needs the
 * previous step whole). */
typedef struct {
    _Alignas(64) atomic_llong claimed;       /* items of the lane claimed so far */
} fr_lane;

typedef struct {
    _Alignas(64) atomic_llong completed;     /* items complete, all lanes */
    fr_lane lanes[FR_TEAM_MAX];
} fr_queue;

/* Claim item `item` of lane `lane` unless another thread has: true if this thread should do it. */
static int fr_queue_claim(fr_queue *queue, int lane, long long item)
{
    long long expected = item;
    return atomic_compare_exchange_strong(&queue->lanes[lane].claimed, &expected, item + 1);
}

/* Wait until `count` items are complete. Items of a round are claimed only once all earlier
 * rounds are complete, so `count` complete items are exactly the rounds before. */
static void fr_queue_wait(fr_queue *queue, long long count)
{
    for (unsigned i = 1; atomic_load_explicit(&queue->completed, memory_order_acquire) < count; i++) {
        if (i < FR_WAIT_SPINS)
            fr_pause();
        else
            sched_yield();
    }
}

static void fr_queue_done(fr_queue *queue)
{
    atomic_fetch_add_explicit(&queue->completed, 1, memory_order_release);
}

#else  /* no POSIX threads: the calling thread alone */

typedef struct {
    long long claimed;
} fr_lane;

typedef struct {
    long long completed;
    fr_lane lanes[FR_TEAM_MAX];
} fr_queue;

static int64_t fr_now_ns(void) { return 0; }    /* no clock: part speeds stay unknown */
static void fr_team_init(void) {}
static int fr_team_acquire(int wanted) { (void)wanted; return 1; }
static int fr_team_try_hold(void) { return 0; }
static void fr_team_release(void) {}
static void fr_team_run(fr_task task, void *arg, int n) { task(arg, 0, n); }
static int fr_queue_claim(fr_queue *queue, int lane, long long item)
{
    return queue->lanes[lane].claimed == item ? (queue->lanes[lane].claimed++, 1) : 0;
}
static void fr_queue_wait(fr_queue *queue, long long count) { (void)queue; (void)count; }
static void fr_queue_done(fr_queue *queue) { queue->completed++; }

#endif
#endif
