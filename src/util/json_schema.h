/*
 * util/json_schema — checks a JSON value against the part of JSON Schema that structured
 * output uses: type (one or a list), properties, required, additionalProperties: false,
 * items, enum, const, minimum/maximum, minLength/maxLength, minItems/maxItems. Keywords
 * outside that set are ignored (the check is no stricter than the schema says).
 *
 * Thread: any. No allocation beyond jansson reads.
 */
#ifndef STRATUS_JSON_SCHEMA_H
#define STRATUS_JSON_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/** @return true when `value` satisfies `schema`; else false with `why` naming the first
 *  failing place ("$.label: must be one of the enum values"). */
bool json_schema_check(const json_t *schema, const json_t *value, char *why, size_t cap);

#endif
