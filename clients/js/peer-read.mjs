// A stock automerge-repo client reading a graph from a *listening replica* (peer-to-peer, no
// relay: `cairn mcp --listen` or `cairn sync --watch --listen`), with a token in the URL as a
// browser would present it. Cairn's peer stories (clients/tests/peer.rs) run it.
//
//   node peer-read.mjs ws://127.0.0.1:PORT TOKEN GRAPH
//
// Prints one JSON line, {"entities": {name: {"type", "observations": [text]}}}, and exits 0;
// a refused connection, a missing document or a timeout exits 1 with a message on stderr.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { SEP, docUrl } from "./schema.mjs"

const [wsUrl, token, graph] = process.argv.slice(2)
const die = (msg) => { console.error(`peer-read: ${msg}`); process.exit(1) }
if (!wsUrl || !token || !graph) die("usage: node peer-read.mjs WS_URL TOKEN GRAPH")
const deadline = setTimeout(() => die("timed out"), 30_000)

// Browsers cannot set headers: the stock adapter presents the token in the URL.
const adapter = new WebSocketClientAdapter(`${wsUrl.replace(/\/$/, "")}/?token=${encodeURIComponent(token)}`, 500)
const repo = new Repo({ network: [adapter] })
await adapter.whenReady()
for (let i = 0; repo.peers.length === 0; i++) {
  if (i > 200) die("the listening replica never answered the handshake")
  await new Promise((r) => setTimeout(r, 50))
}

const find = async (url) => {
  try {
    return await repo.find(url)
  } catch (e) {
    die(`cannot find ${url}: ${e.message}`)
  }
}
const root = (await find(docUrl(`cairn/v1/${graph}/root`))).doc()
if (String(root.cairn) !== "root" || Number(root.shard_count) !== 32) die(`unexpected root document: ${JSON.stringify(root)}`)
const entities = {}
for (let n = 0; n < 32; n++) {
  const doc = (await find(docUrl(`cairn/v1/${graph}/shard/${n}`))).doc()
  for (const [name, record] of Object.entries(doc.entities ?? {})) {
    entities[name] = { type: JSON.parse(String(record)).type, observations: entities[name]?.observations ?? [] }
  }
  for (const key of Object.keys(doc.observations ?? {})) {
    const cut = key.indexOf(SEP)
    const [name, text] = [key.slice(0, cut), key.slice(cut + 1)]
    ;(entities[name] ??= { type: "", observations: [] }).observations.push(text)
  }
}
clearTimeout(deadline)
console.log(JSON.stringify({ entities }))
await repo.shutdown()
process.exit(0)
