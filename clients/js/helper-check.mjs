// Checks of the cairn-graph helper that need no relay, run by clients/tests/javascript.rs:
//
//   node helper-check.mjs <repo>/tests/fixtures/golden
//
// The published document-id and shard vectors (docs/schema.md); the genesis change the helper
// builds is byte for byte the one in Rust's golden documents; every kind of bad input is a
// CairnError with its code and writes nothing; `n` numbers one write's facts from 1, observations
// and relations alike; re-putting the winning value deletes it first. Prints "helper-check: ok"
// and exits 0, or lists what failed and exits 1.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as A from "@automerge/automerge"
import { CairnError, SEP, connect, docUrl, genesis, graphUrls, shardOf } from "cairn-graph"

const [fixtures] = process.argv.slice(2)
if (!fixtures) { console.error("usage: node helper-check.mjs FIXTURES_DIR"); process.exit(1) }
const failures = []
const check = (ok, what) => { if (!ok) failures.push(what) }

// ---- ids --------------------------------------------------------------------------------------
const urls = graphUrls("team")
check(docUrl("") !== urls.root, "distinct labels, distinct ids")
check(urls.root === "automerge:aTrAzZbg393rX9sZ9r2CdbWave8", `root of team: ${urls.root}`)
check(urls.shards[0] === "automerge:4ro4XktmyCfDh54S9VicZA4sBPR", `shard 0 of team: ${urls.shards[0]}`)
check(urls.shards[31] === "automerge:3Nt2NcP4DcZ5PdT1QhfGospcMKt8", `shard 31 of team: ${urls.shards[31]}`)
for (const [name, n] of [["Alice", 13], ["Bob", 4], ["ACME", 16], ["東京", 5]]) check(shardOf(name) === n, `shard of ${name}: ${shardOf(name)}`)

// ---- genesis: the same change as Rust's ---------------------------------------------------------
const expected = JSON.parse(readFileSync(join(fixtures, "graph", "expected.json"), "utf8"))
for (const stem of Object.keys(expected.documents)) {
  const golden = A.load(new Uint8Array(readFileSync(join(fixtures, "graph", `${stem}.automerge`))))
  const first = A.getAllChanges(golden).map(A.decodeChange).find((c) => c.deps.length === 0)
  const shard = stem === "root" ? undefined : Number(stem.slice("shard-".length))
  const mine = A.getAllChanges(A.load(genesis(expected.graph, shard).bytes)).map(A.decodeChange)
  check(mine.length === 1 && mine[0].hash === first.hash, `${stem}: genesis ${mine[0]?.hash}, Rust's ${first.hash}`)
}

// ---- bad input: a CairnError with a code, and nothing written -------------------------------------
const g = await connect({ graph: "checks", agent: "checker@test" })
const refuses = (code, what, f) => refusesOn(g, code, what, f)
function refusesOn(graph, code, what, f) {
  const heads = () => graph.handles.map((h) => h.heads().join()).join()
  const before = heads()
  try {
    f()
    failures.push(`${what}: accepted`)
  } catch (e) {
    check(e instanceof CairnError && e.code === code, `${what}: ${e.code} ${e.message}, wanted ${code}`)
  }
  check(heads() === before, `${what}: wrote something`)
}
refuses("invalid_name", "separator in a name", () => g.createEntities([{ name: `a${SEP}b`, entityType: "t" }]))
refuses("too_large", "a 64 KiB + 1 type", () => g.createEntities([{ name: "a", entityType: "x".repeat(65_537) }]))
refuses("invalid_name", "an empty validity", () => g.createRelations([{ from: "a", relationType: "r", to: "b", validFrom: 5, validTo: 5 }]))
refuses("invalid_name", "a time that is not one", () => g.createRelations([{ from: "a", relationType: "r", to: "b", validFrom: "yesterday" }]))
refuses("not_found", "observations on no entity", () => g.addObservations([{ entityName: "nobody", contents: ["x"] }]))
refuses("invalid_name", "deleting a non-string observation", () => g.deleteObservations([{ entityName: "a", observations: [7] }]))
refuses("invalid_name", "a non-string observation", () => g.createEntities([{ name: "a", entityType: "t", observations: [42] }]))
for (const agent of ["", "tab\there", "x".repeat(129)]) {
  try {
    await connect({ graph: "checks", agent })
    failures.push(`agent ${JSON.stringify(agent)}: accepted`)
  } catch (e) {
    check(e.code === "invalid_name", `agent ${JSON.stringify(agent)}: ${e.message}`)
  }
}
try {
  await connect({ graph: "Not A Graph", agent: "a" })
  failures.push("graph name with spaces accepted")
} catch (e) {
  check(e.code === "invalid_name", `graph name: ${e.message}`)
}

// ---- n, and what one write stores -------------------------------------------------------------
g.createEntities([{ name: "Alice", entityType: "person", observations: ["one", "two"] }, { name: "Bob", entityType: "person" }])
g.createRelations([{ from: "Alice", relationType: "knows", to: "Bob" }, { from: "Bob", relationType: "knows", to: "Alice" }])
const alice = g.entity("Alice")
check(JSON.stringify(alice.observations.map((o) => [o.content, o.n])) === '[["one",1],["two",2]]', `n of observations: ${JSON.stringify(alice.observations)}`)
const rels = g.read().relations.map((r) => [r.from, r.n])
check(JSON.stringify(rels) === '[["Alice",1],["Bob",2]]', `n of relations, one counter per write from 1: ${JSON.stringify(rels)}`)
const doc = g.shards[shardOf("Alice")].doc()
const raw = doc.observations[`Alice${SEP}one`]
check(raw instanceof A.ImmutableString, "records are ImmutableString")
check(A.decodeChange(A.getLastLocalChange(g.shards[shardOf("Bob")].doc())).message === '{"agent":"checker@test"}', "the message names the agent")

// Re-typing to the record already winning deletes and puts again: a new operation.
g.setEntityType("Bob", "person")
const last = A.decodeChange(A.getLastLocalChange(g.shards[shardOf("Bob")].doc()))
check(last.ops.some((o) => o.action === "del") && last.ops.some((o) => o.action === "set"), `re-put of the winning value: ${JSON.stringify(last.ops.map((o) => o.action))}`)

// Validity: current by default, everything on request, and the count of what was left out.
g.addObservations([{ entityName: "Bob", contents: [{ content: "was at Acme", validFrom: "2020-01-01T00:00:00Z", validTo: "2021-01-01T00:00:00Z" }] }])
check(g.entity("Bob").observations.length === 0 && g.read().omitted === 1 && g.read().leftOut.expired === 1, "an ended fact is left out now, and counted as expired")
check(g.entity("Bob", { asOf: Date.parse("2020-06-01T00:00:00Z") }).observations[0]?.validTo === Date.parse("2021-01-01T00:00:00Z"), "as of 2020 it holds")
check(g.entity("Bob", { includeSuperseded: true }).observations.length === 1, "includeSuperseded shows it")
g.deleteEntities(["Bob"])
check(g.read().relations.length === 0, `deleting Bob removed relations to and from him: ${JSON.stringify(g.read().relations)}`)
await g.close()

// ---- supersede (docs/schema.md, "The supersede link") ----------------------------------------------
const ms = (iso) => Date.parse(iso)
const h = await connect({ graph: "facts", agent: "hr@test" })
h.createEntities([{ name: "Alice", entityType: "person", observations: ["likes tea"] }, { name: "Acme", entityType: "company" }, { name: "Initech", entityType: "company" }, { name: "Globex", entityType: "company" }])
h.addObservations([{ entityName: "Alice", contents: [{ content: "works at Acme", validFrom: "2019-01-01T00:00:00Z" }] }])
h.createRelations([{ from: "Alice", relationType: "works_at", to: "Acme", validFrom: "2019-01-01T00:00:00Z" }])
const s1 = h.supersedeObservations([{ entityName: "Alice", replaces: "works at Acme", content: "works at Initech", validFrom: "2022-01-01T00:00:00Z" }])
check(s1[0].superseded === true, `supersede result: ${JSON.stringify(s1)}`)
h.supersedeRelations([{ from: "Alice", relationType: "works_at", to: "Initech", replaces: { from: "Alice", relationType: "works_at", to: "Acme" }, validFrom: "2022-01-01T00:00:00Z" }])
h.supersedeObservations([{ entityName: "Alice", replaces: "works at Initech", content: "works at Globex", validFrom: "2024-06-01T00:00:00Z" }])
const employer = (t) => h.entity("Alice", { asOf: ms(t) }).observations.map((o) => o.content).filter((c) => c.startsWith("works at"))
check(JSON.stringify(employer("2020-01-01T00:00:00Z")) === '["works at Acme"]', `2020: ${employer("2020-01-01T00:00:00Z")}`)
check(JSON.stringify(employer("2023-01-01T00:00:00Z")) === '["works at Initech"]', `2023: ${employer("2023-01-01T00:00:00Z")}`)
check(JSON.stringify(employer("2025-01-01T00:00:00Z")) === '["works at Globex"]', `2025: ${employer("2025-01-01T00:00:00Z")}`)
check(h.entity("Alice").observations.some((o) => o.content === "likes tea"), "nothing else was retired")
const all = h.entity("Alice", { includeSuperseded: true }).observations
const globex = all.find((o) => o.content === "works at Globex")
check(globex.replaces === "works at Initech" && globex.validFrom === ms("2024-06-01T00:00:00Z") && globex.validTo === undefined, `link: ${JSON.stringify(globex)}`)
check(all.find((o) => o.content === "works at Acme").validTo === ms("2022-01-01T00:00:00Z"), "the old fact ends where the new begins")
const rel = h.read({ asOf: ms("2023-01-01T00:00:00Z") }).relations
check(rel.length === 1 && rel[0].to === "Initech" && rel[0].replaces?.to === "Acme", `relation as of 2023: ${JSON.stringify(rel)}`)
check(h.read().omitted === 3, `left out now: ${h.read().omitted}`)
check(JSON.stringify(h.read().leftOut) === '{"superseded":3,"expired":0,"notYetValid":0}', `why: ${JSON.stringify(h.read().leftOut)}`)
check(JSON.stringify(h.read({ asOf: ms("2018-01-01T00:00:00Z") }).leftOut) === '{"superseded":0,"expired":0,"notYetValid":5}', `before any: ${JSON.stringify(h.read({ asOf: ms("2018-01-01T00:00:00Z") }).leftOut)}`)
// The raw record is what docs/schema.md shows.
const rec = JSON.parse(String(h.shards[shardOf("Alice")].doc().relations[`Alice${SEP}works_at${SEP}Initech`]))
check(JSON.stringify(rec.replaces) === '["Alice","works_at","Acme"]' && rec.valid_from === ms("2022-01-01T00:00:00Z"), `record: ${JSON.stringify(rec)}`)
// A fact already superseded is refused; superseding what does not exist writes nothing.
refusesOn(h, "conflict", "superseding a superseded fact", () => h.supersedeObservations([{ entityName: "Alice", replaces: "works at Acme", content: "works at Hooli" }]))
const before = h.handles.map((x) => x.heads().join()).join()
check(h.supersedeObservations([{ entityName: "Alice", replaces: "never said", content: "x" }])[0].superseded === false && h.handles.map((x) => x.heads().join()).join() === before, "no old fact: nothing written")
// A late fact (older than the current one's start) is history and does not displace it.
h.addObservations([{ entityName: "Alice", contents: [{ content: "lives in Paris", validFrom: "2020-01-01T00:00:00Z" }] }])
h.supersedeObservations([{ entityName: "Alice", replaces: "lives in Paris", content: "lived in Lyon", validFrom: "2015-01-01T00:00:00Z" }])
const lyon = h.entity("Alice", { includeSuperseded: true }).observations.find((o) => o.content === "lived in Lyon")
check(lyon.validTo === ms("2020-01-01T00:00:00Z") && h.entity("Alice").observations.some((o) => o.content === "lives in Paris"), `late fact: ${JSON.stringify(lyon)}`)

// Two agents supersede the same fact apart: both kept, reported as a conflict after merging.
const other = await connect({ graph: "facts", agent: "ops@test" })
const shard = shardOf("Alice")
other.repo.import(A.save(h.shards[shard].doc()), { docId: h.shards[shard].documentId })
h.supersedeObservations([{ entityName: "Alice", replaces: "likes tea", content: "likes coffee" }])
other.supersedeObservations([{ entityName: "Alice", replaces: "likes tea", content: "likes mate" }])
h.repo.import(A.save(other.shards[shard].doc()), { docId: h.shards[shard].documentId })
const conflicts = h.read().conflicts
check(conflicts.length === 1 && conflicts[0].replaces === "likes tea" && conflicts[0].by.map((f) => f.content).sort().join() === "likes coffee,likes mate", `conflict: ${JSON.stringify(conflicts)}`)
check(conflicts[0].by.map((f) => f.by).sort().join() === "hr@test,ops@test", "each side says who wrote it")
await h.close()
await other.close()

if (failures.length) {
  console.error(failures.join("\n"))
  process.exit(1)
}
console.log("helper-check: ok")
