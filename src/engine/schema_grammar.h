/*
 * engine/schema_grammar — a GBNF grammar (llama.cpp's grammar format) for the JSON values a
 * JSON Schema describes, so a local model's structured output (response_format
 * json_schema, json functions) is held to the schema while it is generated, not only
 * checked afterwards.
 *
 * Covered: type (one or a list), enum, const, properties (every listed property, in the
 * schema's order — optional ones included, which the schema allows), items with
 * minItems/maxItems, anyOf, nested objects and arrays; strings, numbers, integers, booleans
 * and null. Not covered ($ref,
 * allOf, oneOf, not, patternProperties, pattern, format, if/then): the converter says so and
 * the caller holds the output to any JSON object instead (the gateway still checks the
 * schema). Lengths and bounds are not encoded; the check after generation enforces them.
 *
 * Ownership: returns a malloc'd string. Thread: any.
 */
#ifndef STRATUS_ENGINE_SCHEMA_GRAMMAR_H
#define STRATUS_ENGINE_SCHEMA_GRAMMAR_H

#include <jansson.h>
#include <stddef.h>

/** @return the grammar (root rule "root"), or NULL with `why` naming what is not covered
 *  (or "out of memory"). */
char *schema_grammar(const json_t *schema, char *why, size_t cap);

#endif
