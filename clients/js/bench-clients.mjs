// Stock automerge-repo clients writing to one shared Cairn shard document through a sync server,
// counting every websocket message both ways. The relay benchmark
// (sync-server/benches/stock_clients.rs) runs it against the Cairn relay and the stock sync
// server in turn.
//
//   node bench-clients.mjs WS_URL GRAPH ENTITY CLIENTS RATE SECONDS
//
// CLIENTS clients (each its own Repo and websocket) find the shard of GRAPH that holds ENTITY
// (which must exist: the benchmark creates it), then each writes RATE ordinary Cairn writes a
// second for SECONDS seconds: an observation `ENTITY␟<client>-<n>` whose value is a fact record
// (an ImmutableString of JSON), with the change message {"agent": ...}. A write is
// delivered when every other client has applied it. Messages are counted at the websocket (one
// frame is one message) by a network adapter that wraps the stock one; the counts start after
// every client has found the document and the connections are quiet, and end once every write
// is delivered (or a deadline passes) and one more second has gone by. Prints
// {"event":"counting"} when the counts start, {"event":"done"} when they end, then one JSON line
// of results. With BENCH_TRACE=1 in the environment, every counted sync message is also
// written to stderr (side, heads, need, have, how many changes): what to read when a storm
// needs explaining.
import * as Automerge from "@automerge/automerge"
import { ImmutableString, Repo, cbor } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { SEP, docUrl as urlOf, shardOf } from "./schema.mjs"

const [wsUrl, graph, entity, clientsArg, rateArg, secondsArg] = process.argv.slice(2)
const die = (msg) => { console.error(`bench-clients: ${msg}`); process.exit(1) }
if (!wsUrl || !graph || !entity || !clientsArg || !rateArg || !secondsArg) {
  die("usage: node bench-clients.mjs WS_URL GRAPH ENTITY CLIENTS RATE SECONDS")
}
const docUrl = urlOf(`cairn/v1/${graph}/shard/${shardOf(entity)}`)
const [CLIENTS, RATE, SECONDS] = [Number(clientsArg), Number(rateArg), Number(secondsArg)]
if (!(CLIENTS >= 2 && RATE > 0 && SECONDS > 0)) die("need at least 2 clients, a positive rate and duration")
// How long writes may take to reach everyone after the last one before the run gives up.
const SETTLE_MS = 15_000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const hardDeadline = setTimeout(() => die("timed out"), (SECONDS * 1000 + SETTLE_MS) * 2 + 60_000)

// Counters are one object for all clients; `counting` switches them on for the measured window.
let counting = false
const counts = {
  serverSent: 0, // frames the clients received
  clientsSent: 0, // frames the clients sent
  serverSentEmpty: 0, // of those, sync messages that carry no changes
  clientsSentEmpty: 0,
  serverSentChanges: 0, // changes carried
  clientsSentChanges: 0,
  byType: {}, // "server:sync", "client:sync", ...
  byClient: {}, // frames each client sent
}
const disconnects = []

// The stock websocket adapter with a count of every frame it sends and receives.
class CountingAdapter extends WebSocketClientAdapter {
  constructor(url, name) {
    super(url, 1000)
    this.name = name
  }
  connect(peerId, peerMetadata) {
    super.connect(peerId, peerMetadata)
    const socket = this.socket
    socket.addEventListener("close", (e) => {
      if (!stopping) disconnects.push({ client: this.name, code: e.code, reason: String(e.reason ?? "") })
    })
  }
  send(message) {
    if (this.socket?.readyState === 1) {
      tally("client", message)
      if (counting) counts.byClient[this.name] = (counts.byClient[this.name] ?? 0) + 1
    }
    super.send(message)
  }
  receiveMessage(bytes) {
    try {
      tally("server", cbor.decode(new Uint8Array(bytes)))
    } catch {
      // Not ours to judge: the stock adapter logs and drops what it cannot decode.
    }
    super.receiveMessage(bytes)
  }
}

function tally(side, message) {
  if (!counting) return
  counts[side === "server" ? "serverSent" : "clientsSent"]++
  const key = `${side}:${message.type}`
  counts.byType[key] = (counts.byType[key] ?? 0) + 1
  if ((message.type === "sync" || message.type === "request") && message.data) {
    const decoded = Automerge.decodeSyncMessage(new Uint8Array(message.data))
    const changes = decoded.changes.length
    if (process.env.BENCH_TRACE) {
      const short = (hashes) => hashes.map((h) => h.slice(0, 6))
      console.error(JSON.stringify({
        t: performance.now().toFixed(1),
        side,
        from: message.senderId?.slice(0, 8),
        to: message.targetId?.slice(0, 8),
        heads: short(decoded.heads),
        need: decoded.need.length,
        have: decoded.have.map((h) => ({ last: short(h.lastSync), bloom: h.bloom.length })),
        changes,
      }))
    }
    if (side === "server") {
      counts.serverSentChanges += changes
      if (changes === 0) counts.serverSentEmpty++
    } else {
      counts.clientsSentChanges += changes
      if (changes === 0) counts.clientsSentEmpty++
    }
  }
}

let stopping = false
const prefix = `${entity}${SEP}`
// When each write was made, and when each other client applied it (ms, one clock: one process).
const written = new Map() // key -> { at, by }
const seen = new Map() // key -> Map(client -> at)

const clients = []
for (let i = 0; i < CLIENTS; i++) {
  const name = `c${i}`
  const adapter = new CountingAdapter(wsUrl, name)
  const repo = new Repo({ network: [adapter] })
  clients.push({ name, agent: `bench-${name}@node`, adapter, repo, handle: null, n: 0 })
}
for (const c of clients) {
  await c.adapter.whenReady()
  for (let i = 0; c.repo.peers.length === 0; i++) {
    if (i > 200) die(`${c.name}: the server never answered the handshake`)
    await sleep(25)
  }
}
for (const c of clients) {
  c.handle = await c.repo.find(docUrl)
  if (String(c.handle.doc().cairn) !== "shard") die(`${docUrl} is not a Cairn shard document`)
  c.handle.on("change", ({ patches }) => {
    const now = performance.now()
    for (const p of patches) {
      if (p.path.length !== 2 || p.path[0] !== "observations" || p.action !== "put") continue
      const key = p.path[1]
      const w = written.get(key)
      if (!w || w.by === c.name) continue
      let s = seen.get(key)
      if (!s) seen.set(key, (s = new Map()))
      if (!s.has(c.name)) s.set(c.name, now)
    }
  })
}
// Let the handshakes' syncs finish before counting.
await sleep(1000)
counting = true
const countingFrom = performance.now()
console.log(JSON.stringify({ event: "counting" }))

const started = performance.now()
const interval = 1000 / RATE
const total = Math.round(RATE * SECONDS)
await Promise.all(
  clients.map(async (c, i) => {
    // Spread the clients' writes over the interval rather than all at once.
    await sleep((interval * i) / CLIENTS)
    const t0 = performance.now()
    for (let n = 0; n < total; n++) {
      const key = `${prefix}${c.name}-${n}`
      const at = Date.now()
      written.set(key, { at: performance.now(), by: c.name })
      c.handle.change(
        (d) => {
          d.observations[key] = new ImmutableString(JSON.stringify({ by: c.agent, at }))
        },
        { message: JSON.stringify({ agent: c.agent }), time: at },
      )
      const next = t0 + (n + 1) * interval
      await sleep(Math.max(0, next - performance.now()))
    }
  }),
)
const wroteFor = performance.now() - started
const delivered = () => [...written.keys()].filter((k) => (seen.get(k)?.size ?? 0) === CLIENTS - 1).length
const settleBy = performance.now() + SETTLE_MS
while (delivered() < written.size && performance.now() < settleBy) await sleep(20)
await sleep(1000)
counting = false
const countedFor = performance.now() - countingFrom
console.log(JSON.stringify({ event: "done" }))

const latencies = []
for (const [key, w] of written) {
  const s = seen.get(key)
  if (s?.size === CLIENTS - 1) latencies.push(Math.max(...s.values()) - w.at)
}
latencies.sort((a, b) => a - b)
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : null)
const result = {
  clients: CLIENTS,
  rate: RATE,
  seconds: SECONDS,
  wrote_for_ms: Math.round(wroteFor),
  counted_for_ms: Math.round(countedFor),
  writes: written.size,
  delivered: latencies.length,
  p50_ms: pct(50),
  p99_ms: pct(99),
  max_ms: latencies.length ? latencies[latencies.length - 1] : null,
  ...counts,
  disconnects,
}
stopping = true
for (const c of clients) await c.repo.shutdown()
clearTimeout(hardDeadline)
console.log(JSON.stringify(result))
process.exit(0)
