// A JavaScript agent written with the cairn-graph helper (clients/js/cairn), run by
// clients/tests/javascript.rs. Configured like the `cairn` CLI: CAIRN_RELAY, CAIRN_TOKEN,
// CAIRN_GRAPH, CAIRN_AGENT.
//
//   node helper-agent.mjs write    writes "Helper" with every kind of field, waits until the relay
//                                  holds it, prints the entity as the helper reads it, exits 0
//   node helper-agent.mjs read     waits until in step with the relay, prints every entity and
//                                  relation with all their fields (facts of any validity), exits 0
//   node helper-agent.mjs offline  writes "Offline" at once, relay or not, prints the freshness it
//                                  reads then; then waits (up to 60 s) until the relay holds it
//   node helper-agent.mjs supersede  moves Alice from Acme to Initech on 2022-01-01 (observation
//                                  and relation; Alice, Acme, Initech must exist), waits until the
//                                  relay holds it, prints Alice's facts of any validity, exits 0
//   node helper-agent.mjs refused  expects the relay to refuse the token: prints the error's code
//                                  and message as JSON, exits 3 (0 never: a refusal was expected)
import { CairnError, connect } from "cairn-graph"

const [mode] = process.argv.slice(2)
const env = process.env
const die = (msg, code = 1) => { console.error(`helper-agent: ${msg}`); process.exit(code) }
const graph = await connect({ relay: env.CAIRN_RELAY, token: env.CAIRN_TOKEN, graph: env.CAIRN_GRAPH ?? "default", agent: env.CAIRN_AGENT ?? "js-helper@test" })

if (mode === "write") {
  graph.createEntities([
    { name: "Helper", entityType: "tool", observations: ["plain", { content: "bounded", validFrom: "2025-01-01T00:00:00Z", validTo: "2100-01-01T00:00:00Z" }] },
  ])
  graph.createRelations([{ from: "Helper", relationType: "uses", to: "Alice", validFrom: 1735689600000 }])
  await graph.waitForRelay({ timeout: 20_000 })
  console.log(JSON.stringify(graph.entity("Helper", { includeSuperseded: true })))
  console.log(JSON.stringify({ freshness: graph.freshness() }))
} else if (mode === "offline") {
  graph.createEntities([{ name: "Offline", entityType: "note", observations: ["written with no relay"] }])
  console.log(JSON.stringify({ entity: graph.entity("Offline"), freshness: graph.freshness() }))
  await graph.waitForRelay({ timeout: 60_000 })
  console.log(JSON.stringify({ freshness: graph.freshness() }))
} else if (mode === "supersede") {
  await graph.waitForSync({ timeout: 20_000 })
  const moved = graph.supersedeObservations([{ entityName: "Alice", replaces: "works at Acme", content: "works at Initech", validFrom: "2022-01-01T00:00:00Z" }])
  graph.supersedeRelations([{ from: "Alice", relationType: "works_at", to: "Initech", replaces: { from: "Alice", relationType: "works_at", to: "Acme" }, validFrom: "2022-01-01T00:00:00Z" }])
  await graph.waitForRelay({ timeout: 20_000 })
  const all = graph.read({ includeSuperseded: true })
  console.log(JSON.stringify({ moved, alice: all.entities.find((e) => e.name === "Alice"), relations: all.relations }))
} else if (mode === "read") {
  await graph.waitForSync({ timeout: 20_000 })
  console.log(JSON.stringify(graph.read({ includeSuperseded: true })))
} else if (mode === "refused") {
  try {
    await graph.waitForRelay({ timeout: 20_000 })
  } catch (e) {
    if (!(e instanceof CairnError)) throw e
    console.log(JSON.stringify({ code: e.code, message: e.message, freshness: graph.freshness() }))
    await graph.close()
    process.exit(3)
  }
  die("the relay accepted a token it should refuse")
} else {
  die("usage: node helper-agent.mjs write|offline|supersede|read|refused")
}
await graph.close()
