/*
 * DESIGN: the catalogue is small (tens of entries) and read once, so lookups are linear
 * scans at start-up, not on the request path: the config loader resolves each target's price
 * once and the router and proxy read that.
 */
#include "cost/prices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static const yaml_node_t *get(yaml_document_t *d, const yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (scalar(yaml_document_get_node(d, p->key)) &&
            strcmp(scalar(yaml_document_get_node(d, p->key)), key) == 0)
            return yaml_document_get_node(d, p->value);
    return NULL;
}

static int fail(char *why, size_t size, const char *path, const yaml_node_t *n, const char *msg,
                const char *what)
{
    snprintf(why, size, "%s:%d:%d: %s%s", path, n ? (int)n->start_mark.line + 1 : 0,
             n ? (int)n->start_mark.column + 1 : 0, msg, what ? what : "");
    return -1;
}

static int number(const yaml_node_t *n, double *out)
{
    const char *s = scalar(n);
    char *end = NULL;
    if (s == NULL || *s == '\0' || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return -1;
    double v = strtod(s, &end);
    if (*end != '\0' || !(v >= 0) || v > 1e9) return -1;
    *out = v;
    return 0;
}

static int parse(yaml_document_t *d, struct price_catalogue *c, char *why, size_t size)
{
    const yaml_node_t *root = yaml_document_get_root_node(d);
    if (root == NULL || root->type != YAML_MAPPING_NODE)
        return fail(why, size, c->path, root, "the catalogue must be a mapping", NULL);
    const yaml_node_t *date = get(d, root, "date"), *models = get(d, root, "models");
    if (scalar(date) == NULL)
        return fail(why, size, c->path, root, "missing 'date' (when these prices were listed)",
                    NULL);
    if ((c->date = strdup(scalar(date))) == NULL)
        return fail(why, size, c->path, root, "oom", NULL);
    if (models == NULL || models->type != YAML_MAPPING_NODE)
        return fail(why, size, c->path, root, "'models' must be a mapping of model → prices", NULL);
    size_t count = (size_t)(models->data.mapping.pairs.top - models->data.mapping.pairs.start);
    c->items = calloc(count ? count : 1, sizeof *c->items);
    if (c->items == NULL) return fail(why, size, c->path, models, "out of memory", NULL);
    for (yaml_node_pair_t *p = models->data.mapping.pairs.start; p < models->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(d, p->key),
                          *v = yaml_document_get_node(d, p->value);
        struct model_price *m = &c->items[c->n];
        if (scalar(k) == NULL || scalar(k)[0] == '\0')
            return fail(why, size, c->path, k, "model names must be strings", NULL);
        if ((m->model = strdup(scalar(k))) == NULL)
            return fail(why, size, c->path, k, "out of memory", NULL);
        c->n++;
        if (v->type != YAML_MAPPING_NODE || number(get(d, v, "input"), &m->input) ||
            number(get(d, v, "output"), &m->output))
            return fail(why, size, c->path, v,
                        "needs { input: N, output: N } (USD per 1M tokens) for ", m->model);
        m->cached_input = m->input;
        const yaml_node_t *cached = get(d, v, "cached_input");
        if (cached && number(cached, &m->cached_input))
            return fail(why, size, c->path, cached, "cached_input must be a non-negative number",
                        NULL);
    }
    return 0;
}

struct price_catalogue *prices_load_string(const char *text, size_t len, const char *name,
                                           char *why, size_t size)
{
    struct price_catalogue *c = calloc(1, sizeof *c);
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_ok = false, doc_ok = false;
    if (c == NULL || (c->path = strdup(name)) == NULL) {
        snprintf(why, size, "%s: out of memory", name);
        goto fail;
    }
    if (!(parser_ok = yaml_parser_initialize(&parser))) goto fail;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!(doc_ok = yaml_parser_load(&parser, &doc))) {
        snprintf(why, size, "%s:%d:%d: YAML syntax error: %s", name,
                 (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "invalid document");
        goto fail;
    }
    if (parse(&doc, c, why, size) != 0) goto fail;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return c;
fail:
    if (doc_ok) yaml_document_delete(&doc);
    if (parser_ok) yaml_parser_delete(&parser);
    prices_free(c);
    return NULL;
}

struct price_catalogue *prices_load(const char *path, char *why, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, size, "%s: cannot open the price catalogue", path);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, r;
    do {
        if (len == cap) {
            char *nb = cap < (1u << 22) ? realloc(buf, cap = cap ? cap * 2 : 16384) : NULL;
            if (nb == NULL) {
                free(buf);
                fclose(f);
                snprintf(why, size, "%s: too large or out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        r = fread(buf + len, 1, cap - len, f);
        len += r;
    } while (r > 0);
    fclose(f);
    struct price_catalogue *c = prices_load_string(buf, len, path, why, size);
    free(buf);
    return c;
}

const struct model_price *prices_lookup(const struct price_catalogue *c, const char *model)
{
    if (c == NULL || model == NULL) return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].model, model) == 0) return &c->items[i];
    static const char *const regions[] = {"us.", "eu.", "apac.", "global.", NULL};
    for (const char *const *r = regions; *r; r++)
        if (strncmp(model, *r, strlen(*r)) == 0) return prices_lookup(c, model + strlen(*r));
    const struct model_price *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->n; i++) {
        size_t n = strlen(c->items[i].model);
        char next = model[n < strlen(model) ? n : strlen(model)];
        if (n > best_len && strncmp(model, c->items[i].model, n) == 0 &&
            (next == '-' || next == '@' || next == ':')) {
            best = &c->items[i];
            best_len = n;
        }
    }
    return best;
}

void prices_free(struct price_catalogue *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->n; i++) free(c->items[i].model);
    free(c->items);
    free(c->date);
    free(c->path);
    free(c);
}
