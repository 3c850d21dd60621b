/*
 * DESIGN: scripts are loaded (SCRIPT LOAD) on every connection and called by their SHA1
 * (EVALSHA), so a call sends a 40-byte name, not 2 KB of Lua; a flushed script cache
 * (NOSCRIPT) fails that one call over to the in-process counters and reloads them. Floats cross the
 * Lua boundary as strings: Redis turns Lua numbers into integers.
 */
#include "guard/shared.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "obs/log.h"

struct shared {
    struct event_base *loop;
    char host[256];
    int port;
    char password[256];
    redisAsyncContext *ac; /* NULL while disconnected */
    struct event *reconnect;
    bool closing;
    bool warned;                        /* "redis down" logged since the last connect */
    redisContext *sync;                 /* start-up only: seeding; freed by shared_seed_done */
    char admit_sha[41], settle_sha[41]; /* EVALSHA names, loaded on every connect */
};

static const char admit_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local period = 60000000\n"
    "local function gcra(key, limit, cost)\n"
    "  if limit <= 0 then return 1, 0, 0, 0, 0, nil end\n"
    "  local interval = period / limit\n"
    "  local tat = tonumber(redis.call('GET', key) or '0')\n"
    "  if tat < now then tat = now end\n"
    "  if cost > limit then return 0, 0, period / 1000, math.floor((tat - now) / 1000), 1, nil "
    "end\n"
    "  local new_tat = tat + interval * cost\n"
    "  local allow_at = new_tat - period\n"
    "  if now < allow_at then\n"
    "    return 0, 0, math.ceil((allow_at - now) / 1000), math.ceil((tat - now) / 1000), 0, nil\n"
    "  end\n"
    "  local remaining = math.floor((period - (new_tat - now)) / interval)\n"
    "  if remaining < 0 then remaining = 0 end\n"
    "  return 1, remaining, 0, math.ceil((new_tat - now) / 1000), 0, new_tat\n"
    "end\n"
    "local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local n = tonumber(ARGV[5])\n"
    "local ra, rrem, rretry, rreset, rnever, rtat = gcra(KEYS[1], rpm, 1)\n"
    "if ra == 0 then return {1, rrem, rretry, rreset, 0, 0, 0, 0, 0, -1, '0'} end\n"
    "local ta, trem, tretry, treset, tnever, ttat = gcra(KEYS[2], tpm, tokens)\n"
    "if ta == 0 then return {2, rrem, rretry, rreset, trem, tretry, treset, tnever, 0, -1, '0'} "
    "end\n"
    "local mode, tight, tightfrac, reject = 0, -1, -1, -1\n"
    "local used = {}\n"
    "for i = 1, n do\n"
    "  local base = 5 + (i - 1) * 4\n"
    "  local limit, soft, exh = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), "
    "tonumber(ARGV[base + 3])\n"
    "  local u = tonumber(redis.call('GET', KEYS[2 + i]) or '0')\n"
    "  used[i] = u\n"
    "  local frac = 1\n"
    "  if limit > 0 then frac = u / limit end\n"
    "  if u >= limit and exh == 0 then\n"
    "    if reject < 0 then reject = i end\n"
    "  else\n"
    "    local m = 0\n"
    "    if u >= limit then m = 2 elseif u >= soft * limit then m = 1 end\n"
    "    if m > mode or (m == mode and m ~= 0 and frac > tightfrac) then\n"
    "      mode = m; tight = i; tightfrac = frac\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if reject > 0 then\n"
    "  return {3, rrem, rretry, rreset, trem, tretry, treset, 0, 0, reject - 1, "
    "tostring(used[reject])}\n"
    "end\n"
    "if rtat then redis.call('SET', KEYS[1], string.format('%.0f', rtat), 'PX', 120000) end\n"
    "if ttat then redis.call('SET', KEYS[2], string.format('%.0f', ttat), 'PX', 120000) end\n"
    "for i = 1, n do\n"
    "  redis.call('INCRBYFLOAT', KEYS[2 + i], ARGV[4])\n"
    "  redis.call('PEXPIRE', KEYS[2 + i], tonumber(ARGV[5 + (i - 1) * 4 + 4]))\n"
    "end\n"
    "local u = '0'\n"
    "if tight > 0 then u = tostring(used[tight]) end\n"
    "return {0, rrem, rretry, rreset, trem, tretry, treset, 0, mode, tight - 1, u}\n";

static const char settle_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBYFLOAT', KEYS[i], ARGV[1]) end\n"
    "end\n"
    "local tpm = tonumber(ARGV[2])\n"
    "if tpm > 0 then\n"
    "  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "  if tat > 0 then\n"
    "    tat = tat + (60000000 / tpm) * tonumber(ARGV[3])\n"
    "    if tat < now then tat = now end\n"
    "    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', 120000)\n"
    "  end\n"
    "end\n"
    "return 1\n";

static void connect_async(struct shared *s);

static void load_scripts(redisAsyncContext *ac)
{
    redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", admit_script);
    redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", settle_script);
}

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[20];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
    for (int i = 0; i < 20; i++) {
        out[2 * i] = "0123456789abcdef"[md[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    out[40] = '\0';
}

static void on_reconnect(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    connect_async(ud);
}

static void schedule_reconnect(struct shared *s)
{
    if (s->closing) return;
    struct timeval tv = {1, 0};
    evtimer_add(s->reconnect, &tv);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct shared *s = ac->data;
    if (status != REDIS_OK) {
        if (!s->warned) log_msg("warn", "redis_unavailable", "cannot connect: %s", ac->errstr);
        s->warned = true;
        s->ac = NULL; /* hiredis frees the context after this callback */
        schedule_reconnect(s);
        return;
    }
    if (s->warned) log_msg("info", "redis_connected", "shared limits and budgets back in Redis");
    s->warned = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct shared *s = ac->data;
    s->ac = NULL;
    if (s->closing) return;
    if (status != REDIS_OK && !s->warned) {
        log_msg("warn", "redis_unavailable",
                "connection lost (%s): limits and budgets hold per instance until it is back",
                ac->errstr);
        s->warned = true;
    }
    schedule_reconnect(s);
}

static void connect_async(struct shared *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(s);
        return;
    }
    ac->data = s;
    if (redisLibeventAttach(ac, s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (s->password[0]) redisAsyncCommand(ac, NULL, NULL, "AUTH %s", s->password);
    load_scripts(ac); /* queued ahead of any EVALSHA on this connection */
    s->ac = ac;
}

static int parse_url(struct shared *s, const char *url, struct err *err)
{
    if (strncmp(url, "redis://", 8) != 0)
        return err_set(err, 500, "server_error", NULL,
                       "store.redis must be redis://[:PASSWORD@]HOST[:PORT]");
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        snprintf(s->password, sizeof s->password, "%.*s", (int)(at - pw), pw);
        p = at + 1;
    }
    const char *colon = strrchr(p, ':'), *slash = strchr(p, '/');
    size_t hlen = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
    snprintf(s->host, sizeof s->host, "%.*s", (int)hlen, p);
    s->port = colon ? atoi(colon + 1) : 6379;
    if (s->host[0] == '\0' || s->port <= 0 || s->port > 65535)
        return err_set(err, 500, "server_error", NULL, "store.redis %s: bad host or port", url);
    return 0;
}

/* A blocking connection for start-up: checks reachability and seeds counters. */
static redisContext *connect_sync(struct shared *s, char *why, size_t size)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    if (c == NULL || c->err) {
        snprintf(why, size, "%s", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (s->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        snprintf(why, size, "AUTH failed: %s", r && r->str ? r->str : "no reply");
        if (r) freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    snprintf(why, size, "PING failed: %s", r && r->str ? r->str : "no reply");
    if (r) freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

struct shared *shared_new(struct event_base *loop, const char *url, const char *password,
                          struct err *err)
{
    struct shared *s = calloc(1, sizeof *s);
    if (s == NULL) {
        err_oom(err);
        return NULL;
    }
    s->loop = loop;
    sha1_hex(admit_script, s->admit_sha);
    sha1_hex(settle_script, s->settle_sha);
    if (parse_url(s, url, err) != 0) {
        free(s);
        return NULL;
    }
    if (password) snprintf(s->password, sizeof s->password, "%s", password);
    char why[300];
    redisContext *c = connect_sync(s, why, sizeof why);
    if (c == NULL) {
        err_set(err, 500, "server_error", NULL, "store.redis %s:%d: cannot connect: %s", s->host,
                s->port, why);
        free(s);
        return NULL;
    }
    s->sync = c;
    s->reconnect = evtimer_new(loop, on_reconnect, s);
    if (s->reconnect == NULL) {
        err_oom(err);
        redisFree(c);
        free(s);
        return NULL;
    }
    connect_async(s);
    return s;
}

void shared_free(struct shared *s)
{
    if (s == NULL) return;
    s->closing = true;
    shared_seed_done(s);
    if (s->ac) redisAsyncFree(s->ac); /* pending callbacks see a NULL reply */
    s->ac = NULL;
    event_free(s->reconnect);
    explicit_bzero(s->password, sizeof s->password);
    free(s);
}

bool shared_connected(const struct shared *s)
{
    return s && s->ac && (s->ac->c.flags & REDIS_CONNECTED);
}

void shared_seed_done(struct shared *s)
{
    if (s->sync) redisFree(s->sync);
    s->sync = NULL;
}

int shared_seed(struct shared *s, const char *counter, double usd, int64_t ttl_ms)
{
    redisContext *c = s->sync;
    if (c == NULL) return -1;
    char v[64], ttl[32];
    snprintf(v, sizeof v, "%.17g", usd);
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    redisReply *r = redisCommand(c, "SET %s %s NX PX %s", counter, v, ttl);
    int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
    if (r) freeReplyObject(r);
    return rc;
}

struct pending {
    shared_admit_cb cb;
    void *ud;
};

static int64_t int_at(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_INTEGER
               ? (int64_t)r->element[i]->integer
               : 0;
}

static void on_admit_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct pending *p = privdata;
    const redisReply *r = reply;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 11) {
        if (r && r->type == REDIS_REPLY_ERROR) {
            log_msg("warn", "redis_error", "admission script: %s", r->str);
            /* The script cache was flushed: load the scripts again for the next calls. */
            if (strncmp(r->str, "NOSCRIPT", 8) == 0 && ac) load_scripts(ac);
        }
        p->cb(NULL, p->ud);
        free(p);
        return;
    }
    struct shared_answer a = {.status = (enum shared_status)int_at(r, 0)};
    a.rpm = (struct gcra_result){.allowed = a.status != SHARED_RPM_LIMITED,
                                 .remaining = int_at(r, 1),
                                 .retry_after_ms = int_at(r, 2),
                                 .reset_ms = int_at(r, 3)};
    a.tpm = (struct gcra_result){.allowed = a.status != SHARED_TPM_LIMITED,
                                 .remaining = int_at(r, 4),
                                 .retry_after_ms = int_at(r, 5),
                                 .reset_ms = int_at(r, 6),
                                 .never = int_at(r, 7) != 0};
    a.mode = (int)int_at(r, 8);
    a.budget = (int)int_at(r, 9);
    a.used = r->element[10]->type == REDIS_REPLY_STRING ? atof(r->element[10]->str) : 0;
    p->cb(&a, p->ud);
    free(p);
}

/* KEYS: rpm state, tpm state, budget counters. */
static void key_names(const struct shared_ask *ask, char rpm[96], char tpm[96])
{
    snprintf(rpm, 96, "stratus:rl:%s:rpm", ask->key_id[0] ? ask->key_id : "-");
    snprintf(tpm, 96, "stratus:rl:%s:tpm", ask->key_id[0] ? ask->key_id : "-");
}

int shared_admit(struct shared *s, const struct shared_ask *ask, shared_admit_cb cb, void *ud)
{
    if (!shared_connected(s)) return -1;
    struct pending *p = malloc(sizeof *p);
    if (p == NULL) return -1;
    p->cb = cb;
    p->ud = ud;
    char rpm_key[96], tpm_key[96], nkeys[8], rpm[24], tpm[24], tokens[24], reserve[40], n[8];
    char lim[SHARED_MAX_BUDGETS][40], soft[SHARED_MAX_BUDGETS][40], exh[SHARED_MAX_BUDGETS][4],
        ttl[SHARED_MAX_BUDGETS][24];
    key_names(ask, rpm_key, tpm_key);
    snprintf(nkeys, sizeof nkeys, "%d", 2 + ask->n_budgets);
    snprintf(rpm, sizeof rpm, "%lld", (long long)ask->rpm);
    snprintf(tpm, sizeof tpm, "%lld", (long long)ask->tpm);
    snprintf(tokens, sizeof tokens, "%lld", (long long)ask->tokens);
    snprintf(reserve, sizeof reserve, "%.17g", ask->reserve_usd);
    snprintf(n, sizeof n, "%d", ask->n_budgets);
    const char *argv[4 + 2 + SHARED_MAX_BUDGETS + 5 + 4 * SHARED_MAX_BUDGETS];
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = s->admit_sha;
    argv[argc++] = nkeys;
    argv[argc++] = rpm_key;
    argv[argc++] = tpm_key;
    for (int i = 0; i < ask->n_budgets; i++) argv[argc++] = ask->budgets[i].counter;
    argv[argc++] = rpm;
    argv[argc++] = tpm;
    argv[argc++] = tokens;
    argv[argc++] = reserve;
    argv[argc++] = n;
    for (int i = 0; i < ask->n_budgets; i++) {
        snprintf(lim[i], sizeof lim[i], "%.17g", ask->budgets[i].limit_usd);
        snprintf(soft[i], sizeof soft[i], "%.17g", ask->budgets[i].soft);
        snprintf(exh[i], sizeof exh[i], "%d", ask->budgets[i].local_only ? 1 : 0);
        snprintf(ttl[i], sizeof ttl[i], "%lld", (long long)ask->budgets[i].ttl_ms);
        argv[argc++] = lim[i];
        argv[argc++] = soft[i];
        argv[argc++] = exh[i];
        argv[argc++] = ttl[i];
    }
    if (redisAsyncCommandArgv(s->ac, on_admit_reply, p, argc, argv, NULL) != REDIS_OK) {
        free(p);
        return -1;
    }
    return 0;
}

void shared_settle(struct shared *s, const struct shared_ask *ask, double delta_usd,
                   int64_t token_delta)
{
    if (!shared_connected(s)) return; /* Redis was down: nothing was reserved there */
    char rpm_key[96], tpm_key[96], nkeys[8], delta[40], tpm[24], tokens[24];
    key_names(ask, rpm_key, tpm_key);
    snprintf(nkeys, sizeof nkeys, "%d", 1 + ask->n_budgets);
    snprintf(delta, sizeof delta, "%.17g", delta_usd);
    snprintf(tpm, sizeof tpm, "%lld", (long long)ask->tpm);
    snprintf(tokens, sizeof tokens, "%lld", (long long)token_delta);
    const char *argv[3 + 1 + SHARED_MAX_BUDGETS + 3];
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = s->settle_sha;
    argv[argc++] = nkeys;
    argv[argc++] = tpm_key;
    for (int i = 0; i < ask->n_budgets; i++) argv[argc++] = ask->budgets[i].counter;
    argv[argc++] = delta;
    argv[argc++] = tpm;
    argv[argc++] = tokens;
    redisAsyncCommandArgv(s->ac, NULL, NULL, argc, argv, NULL);
}

struct shared_get {
    shared_get_cb cb; /* NULL once cancelled */
    void *ud;
};

static void on_get_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct shared_get *g = privdata;
    const redisReply *r = reply;
    if (g->cb) {
        if (r && r->type == REDIS_REPLY_STRING)
            g->cb(r->str, r->len, g->ud);
        else
            g->cb(NULL, 0, g->ud);
    }
    free(g);
}

struct shared_get *shared_get(struct shared *s, const char *key, shared_get_cb cb, void *ud)
{
    if (!shared_connected(s)) return NULL;
    struct shared_get *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    g->cb = cb;
    g->ud = ud;
    if (redisAsyncCommand(s->ac, on_get_reply, g, "GET %s", key) != REDIS_OK) {
        free(g);
        return NULL;
    }
    return g;
}

void shared_get_cancel(struct shared_get *g)
{
    if (g) g->cb = NULL;
}

void shared_set(struct shared *s, const char *key, const char *value, size_t len, int64_t ttl_ms)
{
    if (!shared_connected(s)) return;
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    redisAsyncCommand(s->ac, NULL, NULL, "SET %s %b PX %s", key, value, len, ttl);
}
