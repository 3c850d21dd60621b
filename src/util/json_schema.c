/*
 * DESIGN: a recursive walk over schema and value together; the path grows in a fixed
 * buffer so a failure can say where it is without allocating.
 */
#include "util/json_schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Characters, as JSON Schema counts string lengths (not bytes). */
static size_t chars_in(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static bool fail(char *why, size_t cap, const char *path, const char *msg)
{
    snprintf(why, cap, "%s: %s", path, msg);
    return false;
}

static bool type_is(const char *type, const json_t *v)
{
    if (strcmp(type, "object") == 0) return json_is_object(v);
    if (strcmp(type, "array") == 0) return json_is_array(v);
    if (strcmp(type, "string") == 0) return json_is_string(v);
    if (strcmp(type, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(type, "null") == 0) return json_is_null(v);
    if (strcmp(type, "number") == 0) return json_is_number(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    return true; /* an unknown type name constrains nothing */
}

static bool check_type(const json_t *t, const json_t *v)
{
    if (json_is_string(t)) return type_is(json_string_value(t), v);
    if (!json_is_array(t)) return true;
    size_t i;
    const json_t *one;
    json_array_foreach(t, i, one) if (json_is_string(one) &&
                                      type_is(json_string_value(one), v)) return true;
    return false;
}

static bool number_bound(const json_t *s, const char *key, const json_t *v, bool min)
{
    const json_t *b = json_object_get(s, key);
    if (!json_is_number(b) || !json_is_number(v)) return true;
    double x = json_number_value(v), lim = json_number_value(b);
    return min ? x >= lim : x <= lim;
}

static bool size_bound(const json_t *s, const char *key, size_t n, bool min)
{
    const json_t *b = json_object_get(s, key);
    if (!json_is_integer(b)) return true;
    json_int_t lim = json_integer_value(b);
    return min ? (json_int_t)n >= lim : (json_int_t)n <= lim;
}

static bool walk(const json_t *s, const json_t *v, char *path, size_t path_cap, char *why,
                 size_t cap, int depth)
{
    if (!json_is_object(s)) return true; /* true / {} / unknown: anything */
    if (depth > 64) return fail(why, cap, path, "is nested deeper than the schema check allows");
    const json_t *t = json_object_get(s, "type");
    if (t && !check_type(t, v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be of type %s",
                 json_is_string(t) ? json_string_value(t) : "(one of the listed types)");
        return fail(why, cap, path, msg);
    }
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        bool found = false;
        size_t i;
        const json_t *one;
        json_array_foreach(en, i, one) found |= json_equal(one, v);
        if (!found) return fail(why, cap, path, "must be one of the enum values");
    }
    const json_t *cn = json_object_get(s, "const");
    if (cn && !json_equal(cn, v)) return fail(why, cap, path, "must equal the const value");
    if (!number_bound(s, "minimum", v, true)) return fail(why, cap, path, "is below minimum");
    if (!number_bound(s, "maximum", v, false)) return fail(why, cap, path, "is above maximum");
    if (json_is_string(v)) {
        size_t chars = chars_in(json_string_value(v), json_string_length(v));
        if (!size_bound(s, "minLength", chars, true)) return fail(why, cap, path, "is too short");
        if (!size_bound(s, "maxLength", chars, false)) return fail(why, cap, path, "is too long");
    }
    size_t plen = strlen(path);
    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        const json_t *req = json_object_get(s, "required");
        size_t i;
        const json_t *name;
        json_array_foreach(req, i, name)
        {
            if (json_is_string(name) && json_object_get(v, json_string_value(name)) == NULL) {
                char msg[160];
                snprintf(msg, sizeof msg, "is missing required property '%.100s'",
                         json_string_value(name));
                return fail(why, cap, path, msg);
            }
        }
        bool closed = json_is_false(json_object_get(s, "additionalProperties"));
        const char *key;
        const json_t *member;
        json_object_foreach((json_t *)v, key, member)
        {
            const json_t *ps = json_object_get(props, key);
            snprintf(path + plen, path_cap - plen, ".%s", key);
            if (ps == NULL && closed) return fail(why, cap, path, "is not an allowed property");
            if (ps && !walk(ps, member, path, path_cap, why, cap, depth + 1)) return false;
            path[plen] = '\0';
        }
    }
    if (json_is_array(v)) {
        if (!size_bound(s, "minItems", json_array_size(v), true))
            return fail(why, cap, path, "has too few items");
        if (!size_bound(s, "maxItems", json_array_size(v), false))
            return fail(why, cap, path, "has too many items");
        const json_t *items = json_object_get(s, "items");
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            snprintf(path + plen, path_cap - plen, "[%zu]", i);
            if (!walk(items, item, path, path_cap, why, cap, depth + 1)) return false;
            path[plen] = '\0';
        }
    }
    return true;
}

bool json_schema_check(const json_t *schema, const json_t *value, char *why, size_t cap)
{
    char path[256] = "$";
    return walk(schema, value, path, sizeof path, why, cap, 0);
}
