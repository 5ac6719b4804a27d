// Mallory: a write-token holder who sends protocol-valid Automerge changes that break Cairn's
// document schema (docs/schema.md), built with the stock packages only. Cairn's integrity stories
// (sync-server/tests/integrity.rs) run it against a live relay; each attack is one function below.
//
//   node attack.mjs WS_URL TOKEN GRAPH ATTACK [--target ENTITY] [--victim AGENT] [--agent AGENT]
//
// ATTACK is one of the names in `attacks` below, or `read`, which prints the graph as a stock
// reader sees it. `--target` (default "Target") picks the shard attacked: that entity's.
// `--victim` (default "alice") names the agent whose actor `forged-actor` steals. `--agent`
// (default "mallory") is the agent named in change messages.
//
// Prints one JSON line and exits 0 once the outcome is known:
//   {"attack", "outcome", "error", "close", "changes"}
// where outcome is "refused" (the relay sent an automerge-repo `error` message; `error` is its
// text, `close` the close code and reason that followed, if any), "accepted" (the relay's sync
// state shows it holds every change sent), "closed" (closed with no `error`), or "timeout";
// `changes` lists what was sent: {doc, hash, actor, seq} per change. Exits 1 if the attack could
// not be made at all (no handshake, documents not found).
import { createHash } from "node:crypto"
import * as A from "@automerge/automerge"
import { ImmutableString, Repo, parseAutomergeUrl } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { decode } from "cbor-x"
import { SEP, docUrl, shardOf } from "./schema.mjs"

const [wsUrl, token, graph, attack, ...rest] = process.argv.slice(2)
const die = (msg) => { console.error(`attack: ${msg}`); process.exit(1) }
if (!wsUrl || !token || !graph || !attack) die("usage: node attack.mjs WS_URL TOKEN GRAPH ATTACK [--target E] [--victim A] [--agent A]")
const option = (name, fallback) => {
  const i = rest.indexOf(`--${name}`)
  return i >= 0 && i + 1 < rest.length ? rest[i + 1] : fallback
}
const target = option("target", "Target")
const victim = option("victim", "alice")
const agent = option("agent", "mallory")
const deadline = setTimeout(() => die("timed out"), 45_000)

// ---- Connection: the stock adapter, watched ------------------------------------------------

// The stock adapter logs the relay's `error` message and drops it, and reconnects after a close:
// this one records both, and stays closed, so that the outcome can be reported. It also notes the
// heads the relay's sync messages announce per document, and keeps the messages for documents
// this side pushes by hand (`push`, below) away from the repo.
class WatchedAdapter extends WebSocketClientAdapter {
  errors = []
  closes = []
  heads = new Map()
  raw = new Set()
  receiveMessage(bytes) {
    let message
    try {
      message = decode(new Uint8Array(bytes))
    } catch {
      // Not CBOR: the stock adapter ignores it too.
    }
    if (message?.type === "error") this.errors.push(String(message.message))
    if (message?.type === "sync") this.heads.set(message.documentId, A.decodeSyncMessage(message.data).heads)
    if (this.raw.has(message?.documentId)) return
    super.receiveMessage(bytes)
  }
  onClose = (event) => {
    this.closes.push({ code: event?.code ?? 0, reason: String(event?.reason ?? "") })
    if (this.remotePeerId) this.emit("peer-disconnected", { peerId: this.remotePeerId })
  }
}

// Browsers cannot set headers, so the stock adapter presents the token in the URL (docs/security.md).
const adapter = new WatchedAdapter(`${wsUrl.replace(/\/$/, "")}/?token=${encodeURIComponent(token)}`, 60_000)
const repo = new Repo({ network: [adapter] })
await adapter.whenReady()
for (let i = 0; repo.peers.length === 0; i++) {
  if (adapter.closes.length > 0 || i > 200) die(`the relay never answered the handshake: ${JSON.stringify(adapter.closes)}`)
  await new Promise((r) => setTimeout(r, 50))
}
const relayStorage = () => repo.peerMetadataByPeerId[repo.peers[0]]?.storageId

// ---- The documents and the records the schema documents ----------------------------------------

const rootUrl = docUrl(`cairn/v1/${graph}/root`)
const shardUrl = (n) => docUrl(`cairn/v1/${graph}/shard/${n}`)
const find = async (url) => {
  try {
    return await repo.find(url)
  } catch (e) {
    die(`cannot find ${url}: ${e.message}`)
  }
}
const shardHandle = (entity) => find(shardUrl(shardOf(entity)))

const message = JSON.stringify({ agent })
const meta = () => ({ message, time: Date.now() })
const record = (fields) => new ImmutableString(JSON.stringify(fields))
const entityRecord = (type = "thing") => record({ type, by: agent, at: Date.now() })
const factRecord = (extra = {}) => record({ by: agent, at: Date.now(), ...extra })
const obsKey = (entity, text) => `${entity}${SEP}${text}`

// What was sent, for the report (and for the Rust side to check that nobody stored it). `handle`
// is the repo's handle of the document, or null for a document pushed by hand.
const sent = []
const note = (handle, doc, documentId = handle.documentId) => {
  const change = A.decodeChange(A.getLastLocalChange(doc))
  sent.push({ handle, doc: documentId, hash: change.hash, actor: change.actor, seq: change.seq })
}
// A change through the handle, as any automerge-repo app makes one.
const change = (handle, options, fn) => {
  handle.change(fn, options)
  note(handle, handle.doc())
}
// A change built elsewhere (another actor, no dependencies), applied to the handle's document,
// which then syncs it like any other.
const inject = (handle, built) => {
  const bytes = A.getLastLocalChange(built)
  handle.update((doc) => A.applyChanges(doc, [bytes])[0])
  note(handle, built)
}

// Sends all of `doc`'s changes to the relay in one sync message, as to a peer that has nothing,
// whatever the relay holds: for a document this side must not merge with the relay's (a forged
// genesis cannot take in the real one, so the repo's own sync would never get to send it).
const push = (documentId, doc) => {
  adapter.raw.add(documentId)
  const [, nothing] = A.generateSyncMessage(A.init(), A.initSyncState())
  const [, state] = A.receiveSyncMessage(doc, A.initSyncState(), nothing)
  const [, data] = A.generateSyncMessage(doc, state)
  adapter.send({ type: "sync", senderId: repo.peerId, targetId: repo.peers[0], documentId, data })
  note(null, doc, documentId)
}

// ---- The attacks ------------------------------------------------------------------------------

// One well-formed observation of the target, naming `--agent`: refused only where the token is
// bound to other agent names (rule "agent").
async function claim() {
  const h = await shardHandle(target)
  change(h, meta(), (d) => { d.observations[obsKey(target, `claimed by ${agent}`)] = factRecord() })
}

// Replaces the shard's `entities` map with a new one (hiding every entity in the old one).
async function entitiesMap() {
  const h = await shardHandle(target)
  change(h, meta(), (d) => { d.entities = { Mallory: entityRecord() } })
}

// Replaces the shard's `entities` map with a string.
async function entitiesString() {
  const h = await shardHandle(target)
  change(h, meta(), (d) => { d.entities = new ImmutableString("gone") })
}

// Deletes the shard's three maps.
async function deleteMaps() {
  const h = await shardHandle(target)
  change(h, meta(), (d) => {
    delete d.entities
    delete d.observations
    delete d.relations
  })
}

// An entity record in a shard its name does not hash to.
async function wrongShard() {
  const name = "Mallory"
  const h = await find(shardUrl((shardOf(name) + 1) % 32))
  change(h, meta(), (d) => { d.entities[name] = entityRecord() })
}

// An entity whose name breaks the limits, in the shard the name hashes to.
async function badName(name) {
  const h = await shardHandle(name)
  change(h, meta(), (d) => { d.entities[name] = entityRecord() })
}
// (Empty names, NUL and escape characters are stored as given, as the reference memory server
// stores them: docs/schema.md, "Limits". U+001F is the key separator.)
const separatorName = () => badName("Mal\u001flory")
const hugeName = () => badName("M".repeat(100_000))

// An observation of 11 MB (the limit is 10 MiB) on the target.
async function hugeObservation() {
  const h = await shardHandle(target)
  change(h, meta(), (d) => { d.observations[obsKey(target, "x".repeat(11_000_000))] = factRecord() })
}

// A record written as a plain JavaScript string, which automerge-js 3 makes a text object.
async function plainString() {
  const name = "Mallory"
  const h = await shardHandle(name)
  change(h, meta(), (d) => { d.entities[name] = JSON.stringify({ type: "thing", by: agent, at: Date.now() }) })
}

// A number where a record string belongs.
async function numberRecord() {
  const name = "Mallory"
  const h = await shardHandle(name)
  change(h, meta(), (d) => { d.entities[name] = 5 })
}

// An entity record that is not JSON.
async function badRecord() {
  const name = "Mallory"
  const h = await shardHandle(name)
  change(h, meta(), (d) => { d.entities[name] = new ImmutableString("{not json") })
}

// An entity record whose type is not a string.
async function badRecordType() {
  const name = "Mallory"
  const h = await shardHandle(name)
  change(h, meta(), (d) => { d.entities[name] = record({ type: 5, by: agent, at: Date.now() }) })
}

// A valid record in a change with no message (so no agent).
async function noMessage() {
  const name = "Mallory"
  const h = await shardHandle(name)
  change(h, {}, (d) => { d.entities[name] = entityRecord() })
}

// A valid observation under the victim's actor id (read from the shard's history), with the
// next sequence number the shard knows for it.
async function forgedActor() {
  const h = await shardHandle(target)
  const doc = h.doc()
  const changes = A.getAllChanges(doc).map(A.decodeChange)
  const agentOf = (c) => { try { return JSON.parse(c.message).agent } catch { return undefined } }
  const theirs = changes.filter((c) => agentOf(c) === victim)
  if (theirs.length === 0) die(`no change by ${victim} in shard ${shardOf(target)}`)
  const actor = theirs[theirs.length - 1].actor
  const seq = Math.max(...changes.filter((c) => c.actor === actor).map((c) => c.seq))
  const forged = A.change(A.clone(doc, { actor }), meta(), (d) => {
    d.observations[obsKey(target, "forged under a stolen actor")] = factRecord()
  })
  inject(h, forged)
  if (sent.at(-1).seq !== seq + 1) die(`forged seq ${sent.at(-1).seq}, wanted ${seq + 1}`)
}

// Before the graph exists on the relay: a first change under the target shard's genesis actor
// (docs/schema.md: SHA-256 of "cairn/v1/genesis/" and the document id bytes), sequence 1, that
// is not the genesis (it carries an entity), pushed under the shard's document id.
async function forgedGenesis() {
  const n = shardOf(target)
  const { binaryDocumentId, documentId } = parseAutomergeUrl(shardUrl(n))
  const actor = createHash("sha256").update("cairn/v1/genesis/").update(binaryDocumentId).digest().subarray(0, 16)
  const doc = A.change(A.init({ actor: actor.toString("hex") }), { time: 0 }, (d) => {
    d.schema = 1
    d.graph = new ImmutableString(graph)
    d.cairn = new ImmutableString("shard")
    d.shard = n
    d.entities = { Mallory: entityRecord() }
    d.observations = {}
    d.relations = {}
  })
  push(documentId, doc)
  if (sent[0].seq !== 1) die(`forged genesis has seq ${sent[0].seq}`)
}

// A change with no dependencies (a fresh document's first change), merged into the real shard:
// a second history beside genesis. Its `entities` map is created concurrently with genesis's at
// the same Lamport counter (after the same four fields), and its actor id, all 0xff, is greater
// than any genesis actor, so Automerge makes it the winner and hides genesis's map and every
// record in it.
async function noDeps() {
  const n = shardOf(target)
  const h = await find(shardUrl(n))
  const second = A.change(A.init({ actor: "ff".repeat(16) }), meta(), (d) => {
    d.schema = 1
    d.graph = new ImmutableString(graph)
    d.cairn = new ImmutableString("shard")
    d.shard = n
    d.entities = { Mallory: entityRecord() }
  })
  inject(h, second)
}

// Any put into the root document: here, the shard count.
async function rootWrite() {
  const h = await find(rootUrl)
  change(h, meta(), (d) => { d.shard_count = 1 })
}

// Not an attack: what an honest stock client writes, every documented operation, so that the
// check is seen not to refuse it. Entity "JsThing" with observations, a relation to the target,
// a re-type, an observation deleted, a delete-then-put of the same record, and a change with no
// time (automerge-js then writes seconds).
async function honest() {
  const name = "JsThing"
  const h = await shardHandle(name)
  const at = Date.now()
  change(h, meta(), (d) => {
    d.entities[name] = record({ type: "js-thing", by: agent, at })
    d.observations[obsKey(name, "hello from js")] = record({ by: agent, at })
    d.observations[obsKey(name, "second")] = record({ by: agent, at, n: 1 })
  })
  change(h, meta(), (d) => {
    d.relations[`${name}${SEP}knows${SEP}${target}`] = factRecord({ valid_from: at })
  })
  change(h, meta(), (d) => {
    d.entities[name] = record({ type: "js-thing-2", by: agent, at })
    delete d.observations[obsKey(name, "second")]
  })
  change(h, meta(), (d) => {
    const key = obsKey(name, "hello from js")
    const same = String(d.observations[key])
    delete d.observations[key]
    d.observations[key] = new ImmutableString(same)
  })
  const t = await shardHandle(target)
  change(t, { message }, (d) => { d.observations[obsKey(target, "seen by js")] = factRecord() })
}

// ---- Not an attack either: a stock reader -------------------------------------------------------

// Reads the whole graph as a stock client following docs/schema.md would, and prints it as one
// JSON line: {"entities": {name: {"type", "observations": [text]}}, "relations": ["from-type->to"],
// "broken": [what a reader could not read]}.
async function read() {
  const root = (await find(rootUrl)).doc()
  const broken = []
  if (String(root.cairn) !== "root" || Number(root.shard_count) !== 32) broken.push(`root: ${JSON.stringify(root)}`)
  const entities = {}
  const entity = (name) => (entities[name] ??= { type: "", observations: [] })
  const relations = []
  const isMap = (v) => v !== null && typeof v === "object" && !(v instanceof ImmutableString) && !Array.isArray(v)
  // Records are JSON in immutable strings; a bare string is an entity type (docs/schema.md).
  const parse = (v) => { try { return JSON.parse(String(v)) } catch { return { type: String(v) } } }
  for (let n = 0; n < 32; n++) {
    const doc = (await find(shardUrl(n))).doc()
    for (const map of ["entities", "observations", "relations"]) {
      if (!isMap(doc[map])) broken.push(`shard ${n}: ${map} is ${JSON.stringify(doc[map]) ?? "missing"}`)
    }
    if (isMap(doc.entities)) {
      for (const [name, value] of Object.entries(doc.entities)) entity(name).type = String(parse(value).type ?? "")
    }
    if (isMap(doc.observations)) {
      for (const key of Object.keys(doc.observations)) {
        const cut = key.indexOf(SEP)
        entity(key.slice(0, cut)).observations.push(key.slice(cut + 1))
      }
    }
    if (isMap(doc.relations)) {
      for (const key of Object.keys(doc.relations)) {
        const [from, type, to] = key.split(SEP)
        entity(from)
        relations.push(`${from}-${type}->${to}`)
      }
    }
  }
  clearTimeout(deadline)
  console.log(JSON.stringify({ entities, relations, broken }))
  process.exit(0)
}
if (attack === "read") await read()

const attacks = {
  "entities-map": entitiesMap,
  "entities-string": entitiesString,
  "delete-maps": deleteMaps,
  "wrong-shard": wrongShard,
  "separator-name": separatorName,
  "huge-name": hugeName,
  "huge-observation": hugeObservation,
  "plain-string": plainString,
  "number-record": numberRecord,
  "bad-record": badRecord,
  "bad-record-type": badRecordType,
  "no-message": noMessage,
  "forged-actor": forgedActor,
  "forged-genesis": forgedGenesis,
  "no-deps": noDeps,
  "root-write": rootWrite,
  claim,
  honest,
}
if (!attacks[attack]) die(`unknown attack ${attack}; one of: ${Object.keys(attacks).join(", ")}`)
await attacks[attack]()

// ---- The outcome ------------------------------------------------------------------------------

// Whether the relay holds what was sent: its sync state for a repo handle has this side's heads,
// and for a document pushed by hand its sync messages announce the change.
const acknowledged = () => {
  const storage = relayStorage()
  return sent.every(({ handle, doc, hash }) => {
    if (!handle) return (adapter.heads.get(doc) ?? []).includes(hash)
    const theirs = handle.getSyncInfo(storage)?.lastHeads ?? []
    return handle.heads().every((h) => theirs.includes(h))
  })
}
let outcome = "timeout"
for (let waited = 0, afterError = 0; waited < 20_000; waited += 50) {
  if (adapter.errors.length > 0) {
    // The `error` message comes before the close: give the close a moment to follow.
    if (adapter.closes.length > 0 || afterError >= 5_000) { outcome = "refused"; break }
    afterError += 50
  } else if (adapter.closes.length > 0) {
    outcome = "closed"
    break
  } else if (acknowledged()) {
    outcome = "accepted"
    break
  }
  await new Promise((r) => setTimeout(r, 50))
}
clearTimeout(deadline)
console.log(JSON.stringify({
  attack,
  outcome,
  error: adapter.errors[0] ?? null,
  close: adapter.closes[0] ?? null,
  changes: sent.map(({ doc, hash, actor, seq }) => ({ doc, hash, actor, seq })),
}))
process.exit(0)
