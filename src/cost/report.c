#include "cost/report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/rollup.h"
#include "util/clock.h"

#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

/* Every line of a grouped (and maybe bucketed) query, into a malloc'd array — one query;
 * nothing is cut silently. @return lines, -1 (store or memory), or -2 (more than
 * SPEND_REPORT_MAX_LINES). */
static int fetch(struct store_handle *s, enum spend_group by, int64_t bucket_ms, int64_t from,
                 int64_t to, struct spend_line **out, char *why, size_t size)
{
    *out = NULL;
    int n =
        s->ops->spend(s->db, by, bucket_ms, from, to, out, SPEND_REPORT_MAX_LINES + 1, why, size);
    if (n > SPEND_REPORT_MAX_LINES) {
        snprintf(why, size,
                 "the report has more than %d lines: narrow from/to or use a coarser bucket",
                 SPEND_REPORT_MAX_LINES);
        return -2;
    }
    return n;
}

/* Total spend in [from, to): the sum of a grouped query's lines. */
static int total_between(struct store_handle *s, int64_t from, int64_t to, double *usd, char *why,
                         size_t size)
{
    struct spend_line *lines = NULL;
    *usd = 0;
    int n = fetch(s, SPEND_BY_BACKEND, 0, from, to, &lines, why, size);
    for (int i = 0; i < n; i++) *usd += lines[i].cost_usd;
    free(lines);
    return n < 0 ? -1 : 0;
}

int spend_bucket_parse(const char *s)
{
    if (s == NULL || s[0] == '\0' || strcmp(s, "none") == 0) return SPEND_BUCKET_NONE;
    if (strcmp(s, "hour") == 0) return SPEND_BUCKET_HOUR;
    if (strcmp(s, "day") == 0) return SPEND_BUCKET_DAY;
    return -1;
}

const char *spend_bucket_name(enum spend_bucket b)
{
    return b == SPEND_BUCKET_HOUR ? "hour" : b == SPEND_BUCKET_DAY ? "day" : "none";
}

int64_t spend_bucket_ms(enum spend_bucket b)
{
    return b == SPEND_BUCKET_HOUR ? HOUR_MS : b == SPEND_BUCKET_DAY ? DAY_MS : 0;
}

static int by_bucket_cost_group(const void *a, const void *b)
{
    const struct spend_line *x = a, *y = b;
    if (x->bucket_ms != y->bucket_ms) return x->bucket_ms < y->bucket_ms ? -1 : 1;
    if (x->cost_usd != y->cost_usd) return x->cost_usd > y->cost_usd ? -1 : 1;
    return strcmp(x->group, y->group);
}

void spend_lines_sort(struct spend_line *lines, int n)
{
    if (n > 1) qsort(lines, (size_t)n, sizeof *lines, by_bucket_cost_group);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_line(struct spend_line *to, const struct spend_line *l)
{
    to->requests += l->requests;
    to->prompt_tokens += l->prompt_tokens;
    to->completion_tokens += l->completion_tokens;
    to->cost_usd += l->cost_usd;
    to->unknown_cost += l->unknown_cost;
    to->estimated += l->estimated;
}

static int by_bucket_group(const void *a, const void *b)
{
    const struct spend_line *x = a, *y = b;
    if (x->bucket_ms != y->bucket_ms) return x->bucket_ms < y->bucket_ms ? -1 : 1;
    return strcmp(x->group, y->group);
}

/* Route reasons carry live figures ("latency; lowest ttfb up (12.0 ms); after 2 failed
 * attempts"): rollups hold their class already, raw rows at a range's ends do not; lines
 * that read the same once classed (per bucket) become one. @return the new count. */
static int merge_route_reasons(struct spend_line *lines, int n)
{
    for (int i = 0; i < n; i++) {
        char class[sizeof lines[i].group];
        rollup_route_class(lines[i].group, class, sizeof class);
        memcpy(lines[i].group, class, sizeof class);
    }
    if (n > 1) qsort(lines, (size_t)n, sizeof *lines, by_bucket_group);
    int w = 0;
    for (int i = 0; i < n; i++) {
        if (w > 0 && lines[w - 1].bucket_ms == lines[i].bucket_ms &&
            strcmp(lines[w - 1].group, lines[i].group) == 0)
            add_line(&lines[w - 1], &lines[i]);
        else
            lines[w++] = lines[i];
    }
    return w;
}

int spend_lines_top(struct spend_line *lines, int n, const struct spend_line *ranked, int n_ranked,
                    int top)
{
    if (top <= 0 || n_ranked <= top) return n; /* nothing to fold */
    /* The kept names, copied (ranked may be `lines`, rewritten below) and sorted for lookup. */
    char(*names)[sizeof lines->group] = malloc((size_t)top * sizeof *names);
    const char **keep = malloc((size_t)top * sizeof *keep);
    if (names == NULL || keep == NULL) {
        free(names);
        free(keep);
        return -1;
    }
    for (int i = 0; i < top; i++) {
        memcpy(names[i], ranked[i].group, sizeof names[i]);
        keep[i] = names[i];
    }
    qsort(keep, (size_t)top, sizeof *keep, by_name);
    int w = 0;
    for (int i = 0; i < n;) {
        int64_t bucket = lines[i].bucket_ms;
        struct spend_line other = {.bucket_ms = bucket};
        snprintf(other.group, sizeof other.group, "other");
        for (; i < n && lines[i].bucket_ms == bucket; i++) {
            const char *g = lines[i].group;
            if (bsearch(&g, keep, (size_t)top, sizeof *keep, by_name)) {
                if (w != i) lines[w] = lines[i]; /* w <= i: in place */
                w++;
            } else {
                add_line(&other, &lines[i]);
                other.other_groups += lines[i].other_groups ? lines[i].other_groups : 1;
            }
        }
        if (other.other_groups) lines[w++] = other; /* one folded line at least: w < i */
    }
    free(names);
    free(keep);
    return w;
}

int spend_report_build(struct store_handle *store, const struct spend_query *q,
                       struct spend_report *r, char *why, size_t size)
{
    memset(r, 0, sizeof *r);
    r->by = q->by;
    r->bucket = q->bucket;
    r->top = q->top > 0 ? q->top : 0;
    r->from_ms = q->from_ms;
    r->to_ms = q->to_ms;
    r->now_ms = q->now_ms;
    r->anomaly_factor = q->anomaly_factor > 0 ? q->anomaly_factor : 3;
    int64_t now_ms = q->now_ms;
    /* Groups over the whole range: the ranking top-N keeps, and the totals. The stores'
     * SQL orders too, but text collation differs between them: sorting here makes both
     * give the same report. */
    int n = fetch(store, q->by, 0, q->from_ms, q->to_ms, &r->groups, why, size);
    if (n < 0) return n;
    if (q->by == SPEND_BY_ROUTE) n = merge_route_reasons(r->groups, n);
    spend_lines_sort(r->groups, n);
    snprintf(r->total.group, sizeof r->total.group, "total");
    for (int i = 0; i < n; i++) add_line(&r->total, &r->groups[i]);
    if (q->bucket != SPEND_BUCKET_NONE) {
        int m = fetch(store, q->by, spend_bucket_ms(q->bucket), q->from_ms, q->to_ms, &r->lines,
                      why, size);
        if (m < 0) return m;
        if (q->by == SPEND_BY_ROUTE) m = merge_route_reasons(r->lines, m);
        spend_lines_sort(r->lines, m);
        r->n = spend_lines_top(r->lines, m, r->groups, n, r->top);
        if (r->n < 0) {
            snprintf(why, size, "out of memory");
            return -1;
        }
    }
    r->n_groups = spend_lines_top(r->groups, n, r->groups, n, r->top);
    if (r->n_groups < 0) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    if (q->bucket == SPEND_BUCKET_NONE) {
        r->lines = r->groups;
        r->n = r->n_groups;
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
    if (r->lines != r->groups) free(r->lines);
    free(r->groups);
    r->lines = r->groups = NULL;
    r->n = r->n_groups = 0;
}

static json_t *line_json(const struct spend_line *l, enum spend_bucket bucket)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:I}", "group", l->group, "requests",
                          (json_int_t)l->requests, "prompt_tokens", (json_int_t)l->prompt_tokens,
                          "completion_tokens", (json_int_t)l->completion_tokens, "cost_usd",
                          l->cost_usd, "unknown_cost_requests", (json_int_t)l->unknown_cost,
                          "estimated_requests", (json_int_t)l->estimated);
    if (o == NULL) return NULL;
    if (bucket != SPEND_BUCKET_NONE) {
        char at[32];
        clock_iso8601(l->bucket_ms, at, sizeof at);
        json_object_set_new(o, "bucket", json_string(at));
    }
    if (l->other_groups) json_object_set_new(o, "other_groups", json_integer(l->other_groups));
    return o;
}

json_t *spend_report_json(const struct spend_report *r)
{
    char from[32], to[32];
    clock_iso8601(r->from_ms, from, sizeof from);
    clock_iso8601(r->to_ms, to, sizeof to);
    json_t *data = json_array();
    for (int i = 0; i < r->n; i++) json_array_append_new(data, line_json(&r->lines[i], r->bucket));
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:o, s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f, s:b}}", "object",
        "spend_report", "group_by", spend_group_name(r->by), "from", from, "to", to, "data", data,
        "total", line_json(&r->total, SPEND_BUCKET_NONE), "projection", "month_to_date_usd",
        r->month_to_date_usd, "trailing_daily_usd", r->trailing_daily_usd, "projected_month_usd",
        r->projected_month_usd, "anomaly", "last_hour_usd", r->last_hour_usd, "trailing_hourly_usd",
        r->trailing_hourly_usd, "factor", r->anomaly_factor, "flagged", r->anomaly);
    if (doc == NULL) return NULL;
    json_object_set_new(doc, "top", r->top ? json_integer(r->top) : json_null());
    json_object_set_new(doc, "bucket",
                        r->bucket ? json_string(spend_bucket_name(r->bucket)) : json_null());
    if (r->bucket != SPEND_BUCKET_NONE) {
        /* The series' legend: each group's total over the range, in rank order. */
        json_t *groups = json_array();
        for (int i = 0; i < r->n_groups; i++)
            json_array_append_new(groups, line_json(&r->groups[i], SPEND_BUCKET_NONE));
        json_object_set_new(doc, "groups", groups);
    }
    return doc;
}

void report_csv_field(FILE *f, const char *s, bool text)
{
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    bool formula = text && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' ||
                            s[0] == '\t' || s[0] == '\r');
    if (quote) fputc('"', f);
    if (formula) fputc('\'', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    if (quote) fputc('"', f);
}

char *spend_report_csv(const struct spend_report *r, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL) return NULL;
    if (r->bucket != SPEND_BUCKET_NONE) fputs("bucket,", f);
    fprintf(f,
            "%s,requests,prompt_tokens,completion_tokens,cost_usd,unknown_cost_requests,"
            "estimated_requests\r\n",
            spend_group_name(r->by));
    for (int i = 0; i < r->n; i++) {
        const struct spend_line *l = &r->lines[i];
        if (r->bucket != SPEND_BUCKET_NONE) {
            char at[32];
            clock_iso8601(l->bucket_ms, at, sizeof at);
            fprintf(f, "%s,", at);
        }
        report_csv_field(f, l->group, true);
        fprintf(f, ",%lld,%lld,%lld,%.12g,%lld,%lld\r\n", (long long)l->requests,
                (long long)l->prompt_tokens, (long long)l->completion_tokens, l->cost_usd,
                (long long)l->unknown_cost, (long long)l->estimated);
    }
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    if (len) *len = size;
    return buf;
}

void spend_report_print(const struct spend_report *r, FILE *out)
{
    char from[32], to[32];
    clock_iso8601(r->from_ms, from, sizeof from);
    clock_iso8601(r->to_ms, to, sizeof to);
    bool series = r->bucket != SPEND_BUCKET_NONE;
    fprintf(out, "spend by %s%s%s, %s to %s", spend_group_name(r->by), series ? " per " : "",
            series ? spend_bucket_name(r->bucket) : "", from, to);
    if (r->top) fprintf(out, ", top %d (the rest as \"other\")", r->top);
    fprintf(out, "\n\n");
    if (series) fprintf(out, "%-21s ", "bucket");
    fprintf(out, "%-32s %10s %14s %14s %14s %9s\n", spend_group_name(r->by), "requests",
            "prompt tok", "output tok", "cost USD", "unpriced");
    for (int i = 0; i <= r->n; i++) {
        const struct spend_line *l = i < r->n ? &r->lines[i] : &r->total;
        if (i == r->n)
            fprintf(
                out, "%.*s\n", series ? 120 : 98,
                "------------------------------------------------------------------------------"
                "------------------------------------------------------------------------------");
        if (series) {
            char at[32] = "";
            if (i < r->n) clock_iso8601(l->bucket_ms, at, sizeof at);
            fprintf(out, "%-21s ", at);
        }
        char name[48];
        if (l->other_groups)
            snprintf(name, sizeof name, "other (%lld groups)", (long long)l->other_groups);
        else
            snprintf(name, sizeof name, "%.32s", l->group[0] ? l->group : "(none)");
        fprintf(out, "%-32.32s %10lld %14lld %14lld %14.6f %9lld\n", name, (long long)l->requests,
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
