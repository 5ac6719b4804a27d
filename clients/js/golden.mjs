// Reads Cairn's golden fixtures with the stock JavaScript packages only (@automerge/automerge,
// cbor-x, automerge-repo's URL helper) and the schema in docs/schema.md, and checks they hold what
// their expected.json files say. Cairn's interop test runs it; the Rust side is tests/golden.rs.
//
//   node golden.mjs <repo>/tests/fixtures/golden
//
// Exits 0 and prints "golden: ok" if everything matches; otherwise prints what differs and exits 1.
import { readFileSync, readdirSync } from "node:fs"
import { join } from "node:path"
import { isDeepStrictEqual } from "node:util"
import * as A from "@automerge/automerge"
import { decode } from "cbor-x"
import { SEP, docUrl } from "./schema.mjs"

const [dir] = process.argv.slice(2)
const failures = []
const check = (ok, what) => { if (!ok) failures.push(what) }
if (!dir) { console.error("usage: node golden.mjs FIXTURES_DIR"); process.exit(1) }
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"))
const show = (v) => JSON.stringify(v, null, 1)

// ---- Graph documents ------------------------------------------------------------------------

// Rust and SQLite order names by their UTF-8 bytes.
const byBytes = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))
// Records are JSON in immutable strings; ImmutableString, text objects and plain strings all read
// through String(). A bare string that is not JSON is an entity type (docs/schema.md).
const record = (value) => { try { return JSON.parse(String(value)) } catch { return { type: String(value) } } }
const validity = (r) => ({
  ...(r.valid_from !== undefined ? { valid_from: r.valid_from } : {}),
  ...(r.valid_to !== undefined ? { valid_to: r.valid_to } : {}),
})

const graphDir = join(dir, "graph")
const expected = readJson(join(graphDir, "expected.json"))
const graph = expected.graph
const entities = new Map()
const entity = (name) => {
  if (!entities.has(name)) {
    entities.set(name, { name, entity_type: "", observations: [], created_by: "", created_at: 0, conflicts: [] })
  }
  return entities.get(name)
}
const relations = []
for (const [stem, id] of Object.entries(expected.documents)) {
  const label = stem === "root" ? `cairn/v1/${graph}/root` : `cairn/v1/${graph}/shard/${stem.slice("shard-".length)}`
  check(docUrl(label) === `automerge:${id}`, `${stem}: document id ${id}, computed ${docUrl(label)}`)
  const doc = A.load(new Uint8Array(readFileSync(join(graphDir, `${stem}.automerge`))))
  if (stem === "root") {
    check(String(doc.cairn) === "root" && Number(doc.schema) === 1 && String(doc.graph) === graph, `root: ${show(doc)}`)
    check(Number(doc.shard_count) === 32 && doc.shards.length === 32, "root: 32 shards")
    for (let n = 0; n < 32; n++) {
      const want = docUrl(`cairn/v1/${graph}/shard/${n}`)
      check(String(doc.shards[n]) === want, `root: shard ${n} is ${doc.shards[n]}, computed ${want}`)
    }
    continue
  }
  check(String(doc.cairn) === "shard" && `shard-${doc.shard}` === stem, `${stem}: ${show(doc)}`)
  // Who wrote each value of a conflict: the agent in the message of its change.
  const agents = new Map()
  for (const change of A.getAllChanges(doc).map(A.decodeChange)) {
    if (change.message) agents.set(change.actor, JSON.parse(change.message).agent)
  }
  for (const [name, value] of Object.entries(doc.entities)) {
    const e = entity(name)
    const r = record(value)
    Object.assign(e, { entity_type: r.type ?? "", created_by: r.by ?? "", created_at: r.at ?? 0 })
    for (const [opId, other] of Object.entries(A.getConflicts(doc.entities, name) ?? {})) {
      if (String(other) === String(value)) continue
      const actor = opId.slice(opId.indexOf("@") + 1)
      e.conflicts.push({ entity_type: record(other).type ?? "", by: agents.get(actor) ?? `actor:${actor.slice(0, 8)}` })
    }
  }
  for (const [key, value] of Object.entries(doc.observations)) {
    const cut = key.indexOf(SEP)
    const r = record(value)
    entity(key.slice(0, cut)).observations.push({ text: key.slice(cut + 1), by: r.by ?? "", at: r.at ?? 0, ...validity(r), n: r.n ?? 0 })
  }
  for (const [key, value] of Object.entries(doc.relations)) {
    const [from, relation_type, to] = key.split(SEP)
    const r = record(value)
    relations.push({ from, relation_type, to, by: r.by ?? "", at: r.at ?? 0, ...validity(r) })
    entity(from)
  }
}
// Observations by `at`, then `n`, then text; entities by name; relations by (from, type, to).
const read = {
  entities: [...entities.values()].sort((a, b) => byBytes(a.name, b.name)).map((e) => {
    e.observations.sort((a, b) => a.at - b.at || a.n - b.n || byBytes(a.text, b.text))
    e.observations.forEach((o) => delete o.n)
    if (e.conflicts.length === 0) delete e.conflicts
    return e
  }),
  relations: relations.sort((a, b) => byBytes(a.from, b.from) || byBytes(a.relation_type, b.relation_type) || byBytes(a.to, b.to)),
}
check(isDeepStrictEqual(read.entities, expected.entities), `entities differ:\n${show(read.entities)}\nexpected:\n${show(expected.entities)}`)
check(isDeepStrictEqual(read.relations, expected.relations), `relations differ:\n${show(read.relations)}\nexpected:\n${show(expected.relations)}`)

// ---- Wire messages --------------------------------------------------------------------------

// A decoded CBOR value as the fixture describes it: byte strings as {"$bytes": hex}.
const describe = (v) => {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("hex") }
  if (Array.isArray(v)) return v.map(describe)
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, describe(x)]))
  return v
}
const wireDir = join(dir, "wire")
const frames = readJson(join(wireDir, "expected.json"))
const files = readdirSync(wireDir).filter((f) => f.endsWith(".bin")).sort()
check(isDeepStrictEqual(files, Object.keys(frames).sort()), `wire: frames ${files} but described ${Object.keys(frames)}`)
const rootHeads = A.getHeads(A.load(new Uint8Array(readFileSync(join(graphDir, "root.automerge")))))
for (const [file, want] of Object.entries(frames)) {
  const message = decode(readFileSync(join(wireDir, file)))
  check(isDeepStrictEqual(describe(message), want), `${file}: decodes as\n${show(describe(message))}\nexpected:\n${show(want)}`)
  // The sync data is an Automerge sync message: a request knows nothing, a sync has the root's heads.
  if (message.type === "request" || message.type === "sync") {
    const sync = A.decodeSyncMessage(message.data)
    const heads = message.type === "sync" ? rootHeads : []
    check(isDeepStrictEqual(sync.heads, heads), `${file}: sync heads ${sync.heads}, expected ${heads}`)
  }
}

if (failures.length > 0) {
  for (const f of failures) console.error(`golden: ${f}`)
  process.exit(1)
}
console.log("golden: ok")
