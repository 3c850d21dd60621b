/* clock — monotonic and wall time helpers. Thread: any. */
#ifndef STRATUS_CLOCK_H
#define STRATUS_CLOCK_H

#include <stddef.h>
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

/** Wall-clock nanoseconds since the epoch, for trace timestamps. */
static inline uint64_t clock_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Midnight UTC on the 1st of the month containing `ms`, moved `months_ahead` months. */
static inline int64_t clock_month_start_ms(int64_t ms, int months_ahead)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += months_ahead; /* timegm normalises December + 1 */
    return (int64_t)timegm(&tm) * 1000;
}

/** `ms` as "2026-11-29T16:00:00Z" into `out` (32 bytes is enough). */
static inline void clock_iso8601(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

#endif
