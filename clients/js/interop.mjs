// A JavaScript agent on a Cairn graph, using only the stock automerge-repo packages and the
// schema in docs/schema.md. Cairn's interop test runs it; it is also a worked example.
//
//   node interop.mjs ws://127.0.0.1:7878 <graph> <agent>
//
// It joins the graph through the relay, prints every entity it finds as one JSON line
// ({"entities": {...}}), then writes an entity "FromJS" (type "js-thing") with one observation,
// waits until the relay holds the change, and exits 0. Any failure exits 1 with a message.
import { ImmutableString, Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
// Document ids, shards and key separator from docs/schema.md.
import { SEP, docUrl, shardOf } from "./schema.mjs"

const [wsUrl, graph, agent] = process.argv.slice(2)
const die = (msg) => { console.error(`interop: ${msg}`); process.exit(1) }
if (!wsUrl || !graph || !agent) die("usage: node interop.mjs WS_URL GRAPH AGENT")
const deadline = setTimeout(() => die("timed out"), 30_000)

const adapter = new WebSocketClientAdapter(wsUrl, 500)
const repo = new Repo({ network: [adapter] })
await adapter.whenReady()
for (let i = 0; repo.peers.length === 0; i++) {
  if (i > 100) die("the relay never answered the handshake")
  await new Promise((r) => setTimeout(r, 50))
}

// The root names the shards; read them all.
const root = await repo.find(docUrl(`cairn/v1/${graph}/root`))
const rootDoc = root.doc()
// Cairn's strings are scalar (immutable) strings, which automerge-js 3 returns as
// ImmutableString objects: compare and parse them through String().
if (String(rootDoc.cairn) !== "root" || Number(rootDoc.shard_count) !== 32) die(`unexpected root document: ${JSON.stringify(rootDoc)}`)
const shards = []
for (let n = 0; n < 32; n++) {
  const handle = await repo.find(docUrl(`cairn/v1/${graph}/shard/${n}`))
  if (handle.url !== String(rootDoc.shards[n])) die(`shard ${n} is ${rootDoc.shards[n]}, computed ${handle.url}`)
  shards.push(handle)
}
const entities = {}
for (const shard of shards) {
  const doc = shard.doc()
  for (const [name, record] of Object.entries(doc.entities ?? {})) {
    entities[name] = { type: JSON.parse(String(record)).type, observations: [] }
  }
  for (const key of Object.keys(doc.observations ?? {})) {
    const cut = key.indexOf(SEP)
    const [name, text] = [key.slice(0, cut), key.slice(cut + 1)]
    ;(entities[name] ??= { type: "", observations: [] }).observations.push(text)
  }
}
console.log(JSON.stringify({ entities }))

// Write an entity and an observation in its shard, as the schema says: records are immutable
// strings (a plain JS string would become a collaborative text object).
const name = "FromJS"
const shard = shards[shardOf(name)]
const now = Date.now()
shard.change(
  (d) => {
    d.entities[name] = new ImmutableString(JSON.stringify({ type: "js-thing", by: agent, at: now }))
    d.observations[`${name}${SEP}written by stock automerge-repo`] = new ImmutableString(JSON.stringify({ by: agent, at: now }))
  },
  { message: JSON.stringify({ agent }), time: now },
)

// Done when the relay's sync state reports our heads.
const want = shard.heads().slice().sort().join()
await new Promise((resolve) => {
  const check = () => {
    for (const peer of repo.peers) {
      const info = shard.getSyncInfo?.(repo.peerMetadataByPeerId[peer]?.storageId)
      if (info && info.lastHeads.slice().sort().join() === want) return resolve()
    }
    setTimeout(check, 50)
  }
  check()
})
clearTimeout(deadline)
await repo.shutdown()
process.exit(0)
