/*
 * DESIGN: three store queries (the range, month-to-date, the trailing 7 days), each read
 * from margin rollups and grouped in the database; the projection joins them here by group
 * name through sorted copies, so a report with many customers stays O(n log n).
 */
#include "cost/margin.h"

#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

#define DAY_MS 86400000LL

static int by_group(const void *a, const void *b)
{
    return strcmp(((const struct margin_line *)a)->group, ((const struct margin_line *)b)->group);
}

static int fetch(struct store_handle *s, bool by_customer, int64_t from, int64_t to,
                 struct margin_line **lines, size_t *n, char *why, size_t size)
{
    int got =
        s->ops->margin(s->db, by_customer, from, to, lines, MARGIN_REPORT_MAX_LINES + 1, why, size);
    if (got < 0) return -1;
    if ((size_t)got > MARGIN_REPORT_MAX_LINES) {
        snprintf(why, size, "the range holds more than %d groups: narrow it",
                 MARGIN_REPORT_MAX_LINES);
        return -2;
    }
    *n = (size_t)got;
    return 0;
}

static const struct margin_line *find(const struct margin_line *sorted, size_t n, const char *g)
{
    struct margin_line probe;
    snprintf(probe.group, sizeof probe.group, "%s", g);
    return n ? bsearch(&probe, sorted, n, sizeof probe, by_group) : NULL;
}

int margin_report_build(struct store_handle *s, const struct margin_query *q,
                        struct margin_report *r, char *why, size_t size)
{
    memset(r, 0, sizeof *r);
    r->query = *q;
    struct margin_line *mtd = NULL, *week = NULL;
    size_t n_mtd = 0, n_week = 0;
    int rc = fetch(s, q->by_customer, q->from_ms, q->to_ms, &r->lines, &r->n, why, size);
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        const struct margin_line *l = &r->lines[i];
        r->total.requests += l->requests;
        r->total.revenue_usd += l->revenue_usd;
        r->total.cost_usd += l->cost_usd;
        r->total.margin_usd += l->margin_usd;
        r->total.unpriced += l->unpriced;
        r->total.unknown_revenue += l->unknown_revenue;
        r->total.unknown_cost += l->unknown_cost;
    }
    if (rc != 0 || !q->by_customer) return rc;
    int64_t month = clock_month_start_ms(q->now_ms, 0), next = clock_month_start_ms(q->now_ms, 1);
    rc = fetch(s, true, month, q->now_ms + 1, &mtd, &n_mtd, why, size);
    if (rc == 0)
        rc = fetch(s, true, q->now_ms - 7 * DAY_MS, q->now_ms + 1, &week, &n_week, why, size);
    if (rc == 0 && (r->projected = calloc(r->n ? r->n : 1, sizeof *r->projected)) == NULL) {
        snprintf(why, size, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        qsort(mtd, n_mtd, sizeof *mtd, by_group);
        qsort(week, n_week, sizeof *week, by_group);
        double days_left = (double)(next - q->now_ms) / DAY_MS;
        for (size_t i = 0; i < r->n; i++) {
            const struct margin_line *m = find(mtd, n_mtd, r->lines[i].group),
                                     *w = find(week, n_week, r->lines[i].group);
            struct margin_projection *p = &r->projected[i];
            p->revenue_usd = (m ? m->revenue_usd : 0) + (w ? w->revenue_usd / 7 : 0) * days_left;
            p->cost_usd = (m ? m->cost_usd : 0) + (w ? w->cost_usd / 7 : 0) * days_left;
            p->margin_usd = (m ? m->margin_usd : 0) + (w ? w->margin_usd / 7 : 0) * days_left;
        }
    }
    free(mtd);
    free(week);
    return rc;
}

static json_t *line_json(const struct margin_line *l, const struct margin_projection *p)
{
    json_t *o =
        json_pack("{s:I, s:f, s:f, s:f, s:I, s:I, s:I}", "requests", (json_int_t)l->requests,
                  "revenue_usd", l->revenue_usd, "cost_usd", l->cost_usd, "margin_usd",
                  l->margin_usd, "unpriced_requests", (json_int_t)l->unpriced, "unknown_revenue",
                  (json_int_t)l->unknown_revenue, "unknown_cost", (json_int_t)l->unknown_cost);
    /* The share of revenue kept; null when there was no revenue to keep a share of. */
    json_object_set_new(o, "margin_share",
                        l->revenue_usd > 0 ? json_real(l->margin_usd / l->revenue_usd)
                                           : json_null());
    if (p)
        json_object_set_new(o, "projected_month",
                            json_pack("{s:f, s:f, s:f}", "revenue_usd", p->revenue_usd, "cost_usd",
                                      p->cost_usd, "margin_usd", p->margin_usd));
    return o;
}

json_t *margin_report_json(const struct margin_report *r)
{
    char from[32], to[32];
    clock_iso8601(r->query.from_ms, from, sizeof from);
    clock_iso8601(r->query.to_ms, to, sizeof to);
    const char *by = r->query.by_customer ? "customer" : "tier";
    json_t *data = json_array();
    for (size_t i = 0; i < r->n; i++) {
        json_t *o = line_json(&r->lines[i], r->projected ? &r->projected[i] : NULL);
        json_object_set_new(o, by, json_string(r->lines[i].group));
        json_array_append_new(data, o);
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "object", "margin_report", "group_by", by,
                     "from", from, "to", to, "data", data, "total", line_json(&r->total, NULL));
}

void margin_report_print(const struct margin_report *r, FILE *out)
{
    const bool proj = r->projected != NULL;
    fprintf(out, "%-24s %9s %12s %12s %12s %7s%s\n", r->query.by_customer ? "CUSTOMER" : "TIER",
            "REQUESTS", "REVENUE", "COST", "MARGIN", "MARGIN%", proj ? "   MONTH-END MARGIN" : "");
    for (size_t i = 0; i <= r->n; i++) {
        const struct margin_line *l = i < r->n ? &r->lines[i] : &r->total;
        const char *name = i < r->n ? (l->group[0] ? l->group : "(no tier)") : "TOTAL";
        char share[16] = "-";
        if (l->revenue_usd > 0)
            snprintf(share, sizeof share, "%.1f", 100 * l->margin_usd / l->revenue_usd);
        fprintf(out, "%-24.24s %9lld %12.6f %12.6f %12.6f %7s", name, (long long)l->requests,
                l->revenue_usd, l->cost_usd, l->margin_usd, share);
        if (proj && i < r->n) fprintf(out, "   %16.6f", r->projected[i].margin_usd);
        fputc('\n', out);
    }
}

void margin_report_free(struct margin_report *r)
{
    free(r->lines);
    free(r->projected);
    r->lines = NULL;
    r->projected = NULL;
}
