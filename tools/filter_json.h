/*
 * filter_json: a quiver.v1.Filter from its proto3 JSON form, for the tools'
 * --filter option. Parsing is jansson's; this file only maps the parsed tree
 * onto protobuf-c messages and names the JSON path of anything it refuses.
 * It checks the JSON mapping (names, types, oneofs), not the filter's meaning:
 * empty conditions, nesting depth and attribute types are the server's to judge.
 *
 * The mapping accepted (as protobuf's own JSON parsers do):
 * - field names in lowerCamelCase (mustNot, anyOf, hasId, stringValue, ...) or
 *   as written in the proto (must_not, any_of, has_id, string_value, ...); both
 *   spellings of one field in one object is an error, as is an unknown field;
 * - null for a field means "not set";
 * - int64 / uint64 as a JSON number or a decimal string ("-7", "18446744073709551615");
 *   a number with a fraction or out of range is refused;
 * - double as a number or a string: a decimal, "NaN", "Infinity", "-Infinity";
 * - bool as true / false only.
 */
#ifndef QUIVER_TOOLS_FILTER_JSON_H
#define QUIVER_TOOLS_FILTER_JSON_H

#include <stddef.h>

#include "quiver/v1/quiver.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parse a Filter.
 * [in]  text    the JSON text (NUL-terminated).
 * [out] out     on 0: the filter, owned by the caller, freed with
 *               protobuf_c_message_free_unpacked(&(*out)->base, NULL); NULL on error.
 * [out] err     on -1: "PATH: what is wrong", e.g.
 *               "must[0].field.range.lower.value: expected a number", or
 *               "invalid JSON at line 1, column 9: ..." (no path then); errlen bytes,
 *               always NUL-terminated (truncated to fit).
 * Returns 0, or -1 (including out of memory, said in err). */
int qvc_filter_from_json(const char *text, Quiver__V1__Filter **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
