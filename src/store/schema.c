/* DESIGN: the SQL every store shares; columns are chosen from a fixed list, never from user
 * text. */
#include "store/schema.h"

#include <stdio.h>

static const char *const group_columns[] = {"model",    "key_id",  "team",
                                            "customer", "backend", "route"};

const char *spend_group_column(enum spend_group g)
{
    return (unsigned)g < sizeof group_columns / sizeof group_columns[0] ? group_columns[g]
                                                                        : "model";
}

void spend_query_sql(char *out, size_t size, enum spend_group by, int64_t bucket_ms, const char *p1,
                     const char *p2)
{
    const char *c = spend_group_column(by);
    /* Integer division of a BIGINT by an integer truncates in both SQLite and PostgreSQL,
     * and ts_ms is never negative: the same buckets in both stores. */
    char bucket[80] = "0";
    if (bucket_ms > 0)
        snprintf(bucket, sizeof bucket, "(ts_ms / %lld) * %lld", (long long)bucket_ms,
                 (long long)bucket_ms);
    snprintf(out, size,
             "SELECT %s, COUNT(*), SUM(COALESCE(prompt_tokens, 0)), "
             "SUM(COALESCE(completion_tokens, 0)), SUM(COALESCE(cost_usd, 0)), "
             "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(estimated), %s "
             "FROM requests WHERE ts_ms >= %s AND ts_ms < %s GROUP BY %s%s%s "
             "ORDER BY 8, 5 DESC, 1",
             c, bucket, p1, p2, c, bucket_ms > 0 ? ", " : "", bucket_ms > 0 ? bucket : "");
}
