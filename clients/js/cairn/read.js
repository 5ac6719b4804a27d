// Reading a graph from its shard documents (docs/schema.md, "Reading"): pure functions of the
// documents, no network.
import * as A from "@automerge/automerge"
import { parseRecord, splitObservation, splitRelation } from "./records.js"

// Rust and SQLite order names by their UTF-8 bytes; so does this, so both list alike.
export const byBytes = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

const validity = (r) => ({
  ...(Number.isSafeInteger(r.valid_from) ? { validFrom: r.valid_from } : {}),
  ...(Number.isSafeInteger(r.valid_to) ? { validTo: r.valid_to } : {}),
})

/** A fact holds at `t` if validFrom (if any) <= t < validTo (if any). */
export const holdsAt = (fact, t) =>
  (fact.validFrom === undefined || fact.validFrom <= t) && (fact.validTo === undefined || t < fact.validTo)

const fact = (r) => ({ by: String(r.by ?? ""), at: Number.isSafeInteger(r.at) ? r.at : 0, ...validity(r), ...(r.n ? { n: r.n } : {}) })

// The supersede link (docs/schema.md): an observation names the old text of its entity, a
// relation the old [from, type, to]. A malformed link reads as none (the schema check refuses it).
const observationLink = (r) => (typeof r.replaces === "string" ? { replaces: r.replaces } : {})
const relationLink = (r) =>
  Array.isArray(r.replaces) && r.replaces.length === 3 && r.replaces.every((p) => typeof p === "string")
    ? { replaces: { from: r.replaces[0], relationType: r.replaces[1], to: r.replaces[2] } }
    : {}

// An entity record is JSON; a bare string that is not JSON is tolerated as a type.
function entityRecord(value) {
  const r = parseRecord(value)
  if (typeof r.type === "string") return r
  try {
    JSON.parse(String(value))
    return r
  } catch {
    return { type: String(value) }
  }
}

/**
 * Every entity and relation in the given shard documents, with all their metadata and every
 * fact ever recorded and not deleted (validity is not applied here).
 */
export function readShards(docs) {
  const entities = new Map()
  const entity = (name) => {
    let e = entities.get(name)
    if (!e) {
      e = { name, entityType: "", createdBy: "", createdAt: 0, observations: [], conflicts: [] }
      entities.set(name, e)
    }
    return e
  }
  const relations = []
  for (const doc of docs) {
    for (const [name, value] of Object.entries(doc.entities ?? {})) {
      const r = entityRecord(value)
      const e = entity(name)
      e.entityType = String(r.type ?? "")
      e.createdBy = String(r.by ?? "")
      e.createdAt = Number.isSafeInteger(r.at) ? r.at : 0
      // Concurrent puts at one key: Automerge's winner is the value; the others are a conflict
      // until someone writes a resolution (docs/schema.md, "Reading").
      const all = A.getConflicts(doc.entities, name) ?? {}
      if (Object.keys(all).length > 1) {
        for (const v of Object.values(all)) {
          const c = entityRecord(v)
          e.conflicts.push({ entityType: String(c.type ?? ""), by: String(c.by ?? "") })
        }
      }
    }
    for (const [key, value] of Object.entries(doc.observations ?? {})) {
      const parts = splitObservation(key)
      if (!parts) continue
      const r = parseRecord(value)
      entity(parts[0]).observations.push({ content: parts[1], ...fact(r), ...observationLink(r) })
    }
    for (const [key, value] of Object.entries(doc.relations ?? {})) {
      const parts = splitRelation(key)
      if (!parts) continue
      const [from, relationType, to] = parts
      entity(from)
      const r = parseRecord(value)
      relations.push({ from, relationType, to, ...fact(r), ...relationLink(r) })
    }
  }
  for (const e of entities.values()) {
    e.observations.sort((a, b) => a.at - b.at || (a.n ?? 0) - (b.n ?? 0) || byBytes(a.content, b.content))
  }
  relations.sort((a, b) => byBytes(a.from, b.from) || byBytes(a.relationType, b.relationType) || byBytes(a.to, b.to))
  return { entities: [...entities.values()].sort((a, b) => byBytes(a.name, b.name)), relations }
}

/**
 * Keeps the facts that hold at `asOf` (default: now) unless `includeSuperseded`, and counts what
 * it left out, as Cairn's own reads do.
 */
export function current(graph, { asOf, includeSuperseded = false } = {}) {
  const t = asOf ?? Date.now()
  const conflicts = supersedeConflicts(graph, t)
  const leftOut = { superseded: 0, expired: 0, notYetValid: 0 }
  if (includeSuperseded) return { ...graph, omitted: 0, leftOut, conflicts }
  // Why a fact that does not hold at t was left out, as Cairn's reads say it (`leftOut`).
  const keep = (replaced) => (f) => {
    if (holdsAt(f, t)) return true
    if (f.validFrom !== undefined && t < f.validFrom) leftOut.notYetValid++
    else if (replaced(f)) leftOut.superseded++
    else leftOut.expired++
    return false
  }
  const entities = graph.entities.map((e) => {
    const replaced = new Set(e.observations.map((o) => o.replaces).filter((r) => r !== undefined))
    return { ...e, observations: e.observations.filter(keep((o) => replaced.has(o.content))) }
  })
  const triple = (r) => JSON.stringify([r.from, r.relationType, r.to])
  const replacedRelations = new Set(graph.relations.filter((r) => r.replaces).map((r) => triple(r.replaces)))
  const relations = graph.relations.filter(keep((r) => replacedRelations.has(triple(r))))
  const omitted = leftOut.superseded + leftOut.expired + leftOut.notYetValid
  return { entities, relations, omitted, leftOut, conflicts }
}

/**
 * Concurrent supersedes: two or more facts that replace the same fact and both hold at `t`
 * (two agents superseded it while apart). Reported until someone supersedes again.
 */
export function supersedeConflicts(graph, t) {
  const groups = new Map()
  const add = (key, what, f) => {
    if (!holdsAt(f, t)) return
    if (!groups.has(key)) groups.set(key, { ...what, by: [] })
    groups.get(key).by.push(f)
  }
  for (const e of graph.entities) {
    for (const o of e.observations) {
      if (o.replaces !== undefined) add(JSON.stringify(["o", e.name, o.replaces]), { entityName: e.name, replaces: o.replaces }, { ...o, entityName: e.name })
    }
  }
  for (const r of graph.relations) {
    if (r.replaces) add(JSON.stringify(["r", r.replaces.from, r.replaces.relationType, r.replaces.to]), { replaces: r.replaces }, r)
  }
  return [...groups.values()].filter((g) => g.by.length > 1)
}

/** The reference memory server's `read_graph` shape: names, types, texts, triples. */
export function referenceShape({ entities, relations }) {
  return {
    entities: entities.map((e) => ({ name: e.name, entityType: e.entityType, observations: e.observations.map((o) => o.content) })),
    relations: relations.map((r) => ({ from: r.from, to: r.to, relationType: r.relationType })),
  }
}
