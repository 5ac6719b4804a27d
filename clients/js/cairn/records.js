// Records and keys as docs/schema.md defines them ("Shard document", "Limits"): every value in a
// shard's three maps is a JSON string stored as an ImmutableString, never a nested object and
// never a plain JavaScript string (which automerge-js 3 turns into a collaborative text object,
// refused by every relay and replica).
import { ImmutableString } from "@automerge/automerge"
import { CairnError } from "./errors.js"
import { SEP } from "./ids.js"

const NAME_MAX = 65_536
const TEXT_MAX = 10_485_760
const AGENT_MAX = 128
const utf8 = (s) => Buffer.byteLength(s, "utf8")

function checkString(what, s) {
  if (typeof s !== "string") throw new CairnError("invalid_name", `${what} must be a string, got ${typeof s}`)
}

/** Entity names, entity types and relation types: at most 64 KiB of UTF-8, no U+001F. */
export function checkName(what, s) {
  checkString(what, s)
  if (s.includes(SEP)) throw new CairnError("invalid_name", `${what} ${JSON.stringify(s.slice(0, 80))} contains U+001F, the key separator`)
  if (utf8(s) > NAME_MAX) throw new CairnError("too_large", `${what} is ${utf8(s)} bytes; the limit is ${NAME_MAX}`)
  return s
}

/** Observation text: at most 10 MiB, any character. */
export function checkText(s) {
  checkString("observation", s)
  if (utf8(s) > TEXT_MAX) throw new CairnError("too_large", `observation is ${utf8(s)} bytes; the limit is ${TEXT_MAX}`)
  return s
}

/** Agent names: 1 to 128 bytes, no control characters. */
export function checkAgent(s) {
  checkString("agent name", s)
  // Control characters are refused by the schema check (`message` and `record` rules).
  // eslint-disable-next-line no-control-regex
  if (s.length === 0 || utf8(s) > AGENT_MAX || /[\u0000-\u001f\u007f-\u009f]/.test(s)) {
    throw new CairnError("invalid_name", `invalid agent name ${JSON.stringify(s)}: 1 to ${AGENT_MAX} bytes, no control characters`)
  }
  return s
}

/** A world time in milliseconds since the epoch, from a number, a Date or an ISO 8601 string. */
export function toMillis(what, t) {
  if (t === undefined || t === null) return undefined
  const ms = t instanceof Date ? t.getTime() : typeof t === "string" ? Date.parse(t) : t
  if (!Number.isSafeInteger(ms)) throw new CairnError("invalid_name", `${what} is not a time: ${JSON.stringify(t)} (milliseconds or ISO 8601)`)
  return ms
}

export function checkValidity(validFrom, validTo) {
  if (validFrom !== undefined && validTo !== undefined && validTo <= validFrom) {
    throw new CairnError("invalid_name", `validity interval is empty: validTo (${validTo}) is not after validFrom (${validFrom})`)
  }
}

export const observationKey = (entity, text) => `${entity}${SEP}${text}`
export const relationKey = (from, type, to) => `${from}${SEP}${type}${SEP}${to}`

/** Splits an observation key at its first separator: [entity, text]. */
export function splitObservation(key) {
  const cut = key.indexOf(SEP)
  return cut < 0 ? undefined : [key.slice(0, cut), key.slice(cut + 1)]
}

/** Splits a relation key into [from, type, to]; undefined if it does not have three parts. */
export function splitRelation(key) {
  const parts = key.split(SEP)
  return parts.length === 3 ? parts : undefined
}

/** `{"type","by","at"}`, as an ImmutableString. */
export function entityRecord({ type, by, at }) {
  return new ImmutableString(JSON.stringify({ type, by, at }))
}

/**
 * `{"by","at","valid_from"?,"valid_to"?,"n"?}`, as an ImmutableString. Field order follows the Rust
 * writer, so the same fact written by either reads back as the same string.
 */
export function factRecord({ by, at, validFrom, validTo, n, ...extra }) {
  const r = { by, at }
  if (validFrom !== undefined) r.valid_from = validFrom
  if (validTo !== undefined) r.valid_to = validTo
  if (n) r.n = n
  return new ImmutableString(JSON.stringify({ ...r, ...extra }))
}

/** Reads a record string. Unknown fields are kept (readers must ignore what they do not know). */
export function parseRecord(value) {
  try {
    const r = JSON.parse(String(value))
    return r !== null && typeof r === "object" && !Array.isArray(r) ? r : {}
  } catch {
    return {}
  }
}
