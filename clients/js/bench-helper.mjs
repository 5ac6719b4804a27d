// What the cairn-graph helper costs a JavaScript agent, against a running relay; prints a table.
//
//   CAIRN_RELAY=ws://127.0.0.1:7878 CAIRN_TOKEN=cairn_... node bench-helper.mjs [WRITES]
//
// open: connect() until the graph's 33 documents are usable (no network in the path);
// relay holds: from a one-observation write until waitForRelay resolves (the relay stored it),
// one write at a time, WRITES times (default 50).
import { performance } from "node:perf_hooks"
import { connect } from "cairn-graph"

const writes = Number(process.argv[2] ?? 50)
const t0 = performance.now()
const graph = await connect({ relay: process.env.CAIRN_RELAY, token: process.env.CAIRN_TOKEN, graph: process.env.CAIRN_GRAPH ?? "default", agent: "bench@js" })
const open = performance.now() - t0
await graph.waitForSync({ timeout: 30_000 })
const connected = performance.now() - t0
graph.createEntities([{ name: "Bench", entityType: "bench" }])
await graph.waitForRelay({ timeout: 30_000 })
const held = []
for (let i = 0; i < writes; i++) {
  const t = performance.now()
  graph.addObservations([{ entityName: "Bench", contents: [`write ${i} at ${Date.now()}`] }])
  await graph.waitForRelay({ timeout: 30_000 })
  held.push(performance.now() - t)
}
await graph.close()
held.sort((a, b) => a - b)
const q = (p) => held[Math.min(held.length - 1, Math.floor(p * held.length))].toFixed(1)
console.log("| what | ms |\n|---|---|")
console.log(`| open (33 documents from genesis, no network) | ${open.toFixed(0)} |`)
console.log(`| open until in step with the relay | ${connected.toFixed(0)} |`)
console.log(`| write until the relay holds it, p50 (${writes} writes) | ${q(0.5)} |`)
console.log(`| write until the relay holds it, p99 | ${q(0.99)} |`)
