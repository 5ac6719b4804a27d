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
const heads = () => g.handles.map((h) => h.heads().join()).join()
const refuses = (code, what, f) => {
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
check(g.entity("Bob").observations.length === 0 && g.read().omitted === 1, "an ended fact is left out now, and counted")
check(g.entity("Bob", { asOf: Date.parse("2020-06-01T00:00:00Z") }).observations[0]?.validTo === Date.parse("2021-01-01T00:00:00Z"), "as of 2020 it holds")
check(g.entity("Bob", { includeSuperseded: true }).observations.length === 1, "includeSuperseded shows it")
g.deleteEntities(["Bob"])
check(g.read().relations.length === 0, `deleting Bob removed relations to and from him: ${JSON.stringify(g.read().relations)}`)
await g.close()

if (failures.length) {
  console.error(failures.join("\n"))
  process.exit(1)
}
console.log("helper-check: ok")
