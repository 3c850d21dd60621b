#include "cost/report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

/* Total spend in [from, to): the sum of a grouped query's lines. */
static int total_between(struct store_handle *s, int64_t from, int64_t to, double *usd, char *why,
                         size_t size)
{
    struct spend_line lines[64];
    *usd = 0;
    int n = s->ops->spend(s->db, SPEND_BY_BACKEND, from, to, lines, 64, why, size);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) *usd += lines[i].cost_usd;
    return 0;
}

int spend_report_build(struct store_handle *store, enum spend_group by, int64_t from_ms,
                       int64_t to_ms, int64_t now_ms, double anomaly_factor, struct spend_report *r,
                       char *why, size_t size)
{
    memset(r, 0, sizeof *r);
    r->by = by;
    r->from_ms = from_ms;
    r->to_ms = to_ms;
    r->now_ms = now_ms;
    r->anomaly_factor = anomaly_factor > 0 ? anomaly_factor : 3;
    r->lines = calloc(SPEND_REPORT_MAX_LINES, sizeof *r->lines);
    if (r->lines == NULL) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    r->n = store->ops->spend(store->db, by, from_ms, to_ms, r->lines, SPEND_REPORT_MAX_LINES, why,
                             size);
    if (r->n < 0) {
        r->n = 0;
        return -1;
    }
    snprintf(r->total.group, sizeof r->total.group, "total");
    for (int i = 0; i < r->n; i++) {
        r->total.requests += r->lines[i].requests;
        r->total.prompt_tokens += r->lines[i].prompt_tokens;
        r->total.completion_tokens += r->lines[i].completion_tokens;
        r->total.cost_usd += r->lines[i].cost_usd;
        r->total.unknown_cost += r->lines[i].unknown_cost;
        r->total.estimated += r->lines[i].estimated;
    }
    int64_t ms0 = clock_month_start_ms(now_ms, 0), ms1 = clock_month_start_ms(now_ms, 1);
    double week;
    if (total_between(store, ms0, now_ms + 1, &r->month_to_date_usd, why, size) ||
        total_between(store, now_ms - 7 * DAY_MS, now_ms + 1, &week, why, size) ||
        total_between(store, now_ms - HOUR_MS, now_ms + 1, &r->last_hour_usd, why, size))
        return -1;
    double before;
    if (total_between(store, now_ms - HOUR_MS - 7 * DAY_MS, now_ms - HOUR_MS, &before, why, size))
        return -1;
    r->trailing_daily_usd = week / 7.0;
    r->projected_month_usd =
        r->month_to_date_usd + r->trailing_daily_usd * (double)(ms1 - now_ms) / (double)DAY_MS;
    r->trailing_hourly_usd = before / (7.0 * 24.0);
    r->anomaly =
        r->trailing_hourly_usd > 0 && r->last_hour_usd > r->anomaly_factor * r->trailing_hourly_usd;
    return 0;
}

void spend_report_free(struct spend_report *r)
{
    free(r->lines);
    r->lines = NULL;
}

static json_t *line_json(const struct spend_line *l)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:I}", "group", l->group, "requests",
                     (json_int_t)l->requests, "prompt_tokens", (json_int_t)l->prompt_tokens,
                     "completion_tokens", (json_int_t)l->completion_tokens, "cost_usd", l->cost_usd,
                     "unknown_cost_requests", (json_int_t)l->unknown_cost, "estimated_requests",
                     (json_int_t)l->estimated);
}

json_t *spend_report_json(const struct spend_report *r)
{
    char from[32], to[32];
    clock_iso8601(r->from_ms, from, sizeof from);
    clock_iso8601(r->to_ms, to, sizeof to);
    json_t *data = json_array();
    for (int i = 0; i < r->n; i++) json_array_append_new(data, line_json(&r->lines[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f, s:b}}",
                     "object", "spend_report", "group_by", spend_group_name(r->by), "from", from,
                     "to", to, "data", data, "total", line_json(&r->total), "projection",
                     "month_to_date_usd", r->month_to_date_usd, "trailing_daily_usd",
                     r->trailing_daily_usd, "projected_month_usd", r->projected_month_usd,
                     "anomaly", "last_hour_usd", r->last_hour_usd, "trailing_hourly_usd",
                     r->trailing_hourly_usd, "factor", r->anomaly_factor, "flagged", r->anomaly);
}

void spend_report_print(const struct spend_report *r, FILE *out)
{
    char from[32], to[32];
    clock_iso8601(r->from_ms, from, sizeof from);
    clock_iso8601(r->to_ms, to, sizeof to);
    fprintf(out, "spend by %s, %s to %s\n\n", spend_group_name(r->by), from, to);
    fprintf(out, "%-32s %10s %14s %14s %14s %9s\n", spend_group_name(r->by), "requests",
            "prompt tok", "output tok", "cost USD", "unpriced");
    for (int i = 0; i <= r->n; i++) {
        const struct spend_line *l = i < r->n ? &r->lines[i] : &r->total;
        if (i == r->n)
            fprintf(out, "%.*s\n", 98,
                    "------------------------------------------------------------------------------"
                    "-------------------------");
        fprintf(out, "%-32.32s %10lld %14lld %14lld %14.6f %9lld\n",
                l->group[0] ? l->group : "(none)", (long long)l->requests,
                (long long)l->prompt_tokens, (long long)l->completion_tokens, l->cost_usd,
                (long long)l->unknown_cost);
    }
    fprintf(out,
            "\nmonth to date $%.6f; trailing 7-day rate $%.6f/day; projected month end $%.6f\n",
            r->month_to_date_usd, r->trailing_daily_usd, r->projected_month_usd);
    fprintf(out, "last hour $%.6f vs trailing hourly mean $%.6f%s\n", r->last_hour_usd,
            r->trailing_hourly_usd, r->anomaly ? "  ANOMALY: above the threshold" : "");
}

int report_parse_time(const char *s, int64_t now_ms, int64_t *out)
{
    if (s == NULL || s[0] == '\0') return -1;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end != s && v >= 0) {
        if (strcmp(end, "d") == 0) return *out = now_ms - v * DAY_MS, 0;
        if (strcmp(end, "h") == 0) return *out = now_ms - v * HOUR_MS, 0;
        if (strcmp(end, "m") == 0) return *out = now_ms - v * 60000LL, 0;
        if (*end == '\0' && strlen(s) > 8) return *out = v, 0; /* epoch ms */
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (rest == NULL) return -1;
    if (*rest == 'T') {
        rest = strptime(rest + 1, "%H:%M:%S", &tm);
        if (rest == NULL || (strcmp(rest, "Z") != 0 && *rest != '\0')) return -1;
    } else if (*rest != '\0') {
        return -1;
    }
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}
