/* DESIGN: the SQL every store shares; columns are chosen from a fixed list, never from user
 * text. */
#include "store/schema.h"

#include <stdio.h>

static const char *const group_columns[] = {"model", "key_id", "team", "customer", "backend"};

const char *spend_group_column(enum spend_group g)
{
    return (unsigned)g < 5 ? group_columns[g] : "model";
}

void spend_query_sql(char *out, size_t size, enum spend_group by, const char *p1, const char *p2)
{
    const char *c = spend_group_column(by);
    snprintf(out, size,
             "SELECT %s, COUNT(*), SUM(COALESCE(prompt_tokens, 0)), "
             "SUM(COALESCE(completion_tokens, 0)), SUM(COALESCE(cost_usd, 0)), "
             "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(estimated) "
             "FROM requests WHERE ts_ms >= %s AND ts_ms < %s GROUP BY %s "
             "ORDER BY 5 DESC, 1",
             c, p1, p2, c);
}
