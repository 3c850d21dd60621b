/* clock — monotonic and wall time helpers. Thread: any. */
#ifndef STRATUS_CLOCK_H
#define STRATUS_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic nanoseconds, for latencies. */
static inline uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Wall-clock milliseconds since the epoch, for timestamps and calendar periods. */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
