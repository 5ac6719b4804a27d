// A graph opened on a stock automerge-repo Repo: its 33 documents seeded from their genesis (so
// reads and writes never wait for the network), typed reads, and writes that follow the table in
// docs/schema.md ("Writing") exactly.
import * as A from "@automerge/automerge"
import { decodeHeads, parseAutomergeUrl } from "@automerge/automerge-repo"
import { CairnError } from "./errors.js"
import { genesis, graphUrls, shardOf } from "./ids.js"
import { current, readShards, referenceShape } from "./read.js"
import {
  checkAgent, checkName, checkText, checkValidity, entityRecord, factRecord, observationKey,
  parseRecord, relationKey, splitObservation, splitRelation, toMillis,
} from "./records.js"
import { deniedError, relayHolds, relayStorageId, waitForRelay, waitUntil } from "./relay.js"

// A document this process already has, or has stored, is used as it is; otherwise it starts from
// its genesis, which every replica produces byte for byte, so it merges with whatever the relay
// holds. automerge-repo's `find` would instead wait for a peer to send the document.
async function openDoc(repo, url, bytes) {
  const { documentId } = parseAutomergeUrl(url)
  const cached = repo.handles[documentId]
  if (cached?.isReady()) return cached
  // `storageSubsystem` is automerge-repo's (typed, marked hidden): a stored document must be
  // loaded, not shadowed by a fresh genesis.
  if (repo.storageSubsystem && (await repo.storageSubsystem.loadDoc(documentId))) return repo.find(url)
  const handle = repo.import(bytes, { docId: documentId })
  handle.doneLoading()
  // Each document costs the event loop some milliseconds (automerge-repo's handle machinery):
  // let sockets and timers run between them.
  await new Promise((resolve) => setImmediate(resolve))
  return handle
}

/**
 * Opens `graph` on `repo` as `agent`. `adapter`, if given, is the RelayAdapter the repo uses:
 * freshness and waitForRelay then report a refused token or change instead of timing out.
 */
export async function openGraph(repo, graph, { agent, adapter } = {}) {
  checkAgent(agent)
  const urls = graphUrls(graph)
  const root = await openDoc(repo, urls.root, genesis(graph).bytes)
  const shards = []
  for (let n = 0; n < urls.shards.length; n++) shards.push(await openDoc(repo, urls.shards[n], genesis(graph, n).bytes))
  return new Graph(repo, graph, agent, root, shards, adapter)
}

export class Graph {
  #offlineSince = Date.now()
  #lastSync = undefined

  constructor(repo, name, agent, root, shards, adapter) {
    this.repo = repo
    this.name = name
    this.agent = agent
    this.root = root
    this.shards = shards
    this.adapter = adapter
    adapter?.on("peer-disconnected", () => { this.#offlineSince = Date.now() })
  }

  /** Every document handle of the graph, root first. */
  get handles() {
    return [this.root, ...this.shards]
  }

  // ---- reads ------------------------------------------------------------------------------

  /**
   * Entities with every field (type, creator, observations with who/when/validity, conflicts)
   * and relations, facts valid at `asOf` (default now) unless `includeSuperseded`; `omitted`
   * counts the facts left out.
   */
  read(options) {
    return current(readShards(this.shards.map((s) => s.doc())), options)
  }

  /** One entity as `read` gives it, or undefined. */
  entity(name, options) {
    const shard = this.shards[shardOf(name)].doc()
    const g = current(readShards([shard]), options)
    return g.entities.find((e) => e.name === name)
  }

  /** The reference memory server's `read_graph` result. */
  readGraph(options) {
    return referenceShape(this.read(options))
  }

  /** The reference's `open_nodes`: the named entities and the relations between them. */
  openNodes(names, options) {
    const g = this.read(options)
    const want = new Set(names)
    return referenceShape({
      entities: g.entities.filter((e) => want.has(e.name)),
      relations: g.relations.filter((r) => want.has(r.from) && want.has(r.to)),
    })
  }

  /** The reference's `search_nodes`: case-insensitive substring of a name, type or observation. */
  searchNodes(query, options) {
    const q = String(query).toLowerCase()
    const g = this.read(options)
    const hit = (e) => [e.name, e.entityType, ...e.observations.map((o) => o.content)].some((s) => s.toLowerCase().includes(q))
    const entities = g.entities.filter(hit)
    const names = new Set(entities.map((e) => e.name))
    return referenceShape({ entities, relations: g.relations.filter((r) => names.has(r.from) && names.has(r.to)) })
  }

  // ---- writes -----------------------------------------------------------------------------

  // One write: edits grouped by shard, one change per shard, with the agent in the message and
  // the time in milliseconds. `n` numbers the facts the write records, from 1, observations and
  // relations alike.
  #write(build) {
    const now = Date.now()
    const edits = new Map()
    let n = 0
    const editShard = (s, f) => {
      if (!edits.has(s)) edits.set(s, [])
      edits.get(s).push(f)
    }
    const w = {
      now,
      fact: (extra) => factRecord({ by: this.agent, at: now, n: ++n, ...extra }),
      edit: (entity, f) => editShard(shardOf(entity), f),
      editShard,
    }
    const result = build(w)
    for (const [s, fs] of edits) {
      this.shards[s].change((d) => { for (const f of fs) f(d) }, { message: JSON.stringify({ agent: this.agent }), time: now })
    }
    return result
  }

  #shardDoc(entity) {
    return this.shards[shardOf(entity)].doc()
  }

  #exists(entity) {
    const d = this.#shardDoc(entity)
    if (d.entities?.[entity] !== undefined) return true
    const has = (map, parts) => Object.keys(map ?? {}).some((k) => parts(k)?.[0] === entity)
    return has(d.observations, splitObservation) || has(d.relations, splitRelation)
  }

  /** The reference's `create_entities`: returns the entities it created (existing names are skipped). */
  createEntities(entities) {
    for (const e of entities) {
      checkName("entity name", e.name)
      checkName("entity type", e.entityType)
      for (const o of e.observations ?? []) observationInput(o)
    }
    return this.#write((w) => {
      const created = []
      const seen = new Set()
      for (const e of entities) {
        if (seen.has(e.name) || this.#shardDoc(e.name).entities?.[e.name] !== undefined) continue
        seen.add(e.name)
        const record = entityRecord({ type: e.entityType, by: this.agent, at: w.now })
        const facts = (e.observations ?? []).map(observationInput).map((o) => [o.content, w.fact(o)])
        w.edit(e.name, (d) => {
          d.entities[e.name] = record
          for (const [text, rec] of facts) {
            if (d.observations[observationKey(e.name, text)] === undefined) d.observations[observationKey(e.name, text)] = rec
          }
        })
        created.push({ name: e.name, entityType: e.entityType, observations: (e.observations ?? []).map((o) => observationInput(o).content) })
      }
      return created
    })
  }

  /**
   * The reference's `add_observations`; a content is a string or `{content, validFrom?, validTo?}`
   * (milliseconds, Date or ISO 8601). Throws "not_found" for an entity that does not exist, and
   * then writes nothing.
   */
  addObservations(items) {
    for (const item of items) {
      checkName("entity name", item.entityName)
      if (!this.#exists(item.entityName)) throw new CairnError("not_found", `Entity with name ${item.entityName} not found`)
      for (const c of item.contents) observationInput(c)
    }
    return this.#write((w) =>
      items.map((item) => {
        const added = []
        const have = this.#shardDoc(item.entityName).observations ?? {}
        for (const o of item.contents.map(observationInput)) {
          const key = observationKey(item.entityName, o.content)
          if (have[key] !== undefined || added.includes(o.content)) continue
          const rec = w.fact(o)
          w.edit(item.entityName, (d) => { d.observations[key] = rec })
          added.push(o.content)
        }
        return { entityName: item.entityName, addedObservations: added }
      }),
    )
  }

  /** The reference's `create_relations` (with optional validFrom/validTo); returns those created. */
  createRelations(relations) {
    const input = relations.map(relationInput)
    return this.#write((w) => {
      const created = []
      for (const r of input) {
        const key = relationKey(r.from, r.relationType, r.to)
        if (this.#shardDoc(r.from).relations?.[key] !== undefined || created.some((c) => relationKey(c.from, c.relationType, c.to) === key)) continue
        const rec = w.fact(r)
        w.edit(r.from, (d) => { d.relations[key] = rec })
        created.push({ from: r.from, to: r.to, relationType: r.relationType })
      }
      return created
    })
  }

  /**
   * The MCP server's `supersede_observations`: ends observation `replaces` of `entityName` at
   * `validFrom` (default now) and records `content` in its place, linked to it (docs/schema.md,
   * "The supersede link"). Nothing else is retired. An old fact that does not exist is skipped
   * (`superseded: false`); one that a present fact already replaces is refused ("conflict"):
   * supersede its replacement instead. Checks every item before it writes anything.
   */
  supersedeObservations(items) {
    const plans = items.map((item) => {
      checkName("entity name", item.entityName)
      checkText(item.replaces)
      checkText(item.content)
      const e = item.entityName
      if (!this.#exists(e)) throw new CairnError("not_found", `Entity with name ${e} not found`)
      const observations = this.#shardDoc(e).observations ?? {}
      const old = observations[observationKey(e, item.replaces)]
      if (old === undefined) return { item }
      const by = Object.entries(observations).find(([k, v]) => splitObservation(k)?.[0] === e && parseRecord(v).replaces === item.replaces)
      if (by) throw new CairnError("conflict", `observation ${JSON.stringify(item.replaces)} of ${e} is already superseded by ${JSON.stringify(splitObservation(by[0])[1])}: supersede that one instead`)
      return { item, old: parseRecord(old), ...supersedeTimes(parseRecord(old), toMillis("validFrom", item.validFrom)) }
    })
    return this.#write((w) =>
      plans.map(({ item, old, ended, validity }) => {
        if (!old) return { entityName: item.entityName, replaces: item.replaces, content: item.content, superseded: false }
        const e = item.entityName
        if (ended) w.edit(e, (d) => putFresh(d.observations, observationKey(e, item.replaces), factRecord(recordFields({ ...old, valid_to: ended }))))
        const key = observationKey(e, item.content)
        if (this.#shardDoc(e).observations?.[key] === undefined) {
          const rec = w.fact({ ...validity, replaces: item.replaces })
          w.edit(e, (d) => { d.observations[key] = rec })
        }
        return { entityName: e, replaces: item.replaces, content: item.content, superseded: true }
      }),
    )
  }

  /**
   * The MCP server's `supersede_relations`: ends relation `replaces` ({from, relationType, to})
   * at `validFrom` (default now) and records the item's triple in its place, linked to it. Both
   * entities of the new relation must exist. Otherwise as supersedeObservations.
   */
  supersedeRelations(items) {
    const plans = items.map((item) => {
      const next = relationInput(item)
      const prev = relationInput(item.replaces ?? {})
      for (const name of [next.from, next.to]) if (!this.#exists(name)) throw new CairnError("not_found", `Entity with name ${name} not found`)
      const oldKey = relationKey(prev.from, prev.relationType, prev.to)
      const old = this.#shardDoc(prev.from).relations?.[oldKey]
      if (old === undefined) return { next, prev }
      const link = [prev.from, prev.relationType, prev.to]
      for (const shard of this.shards) {
        const by = Object.entries(shard.doc().relations ?? {}).find(([, v]) => JSON.stringify(parseRecord(v).replaces) === JSON.stringify(link))
        if (by) throw new CairnError("conflict", `relation ${JSON.stringify(link)} is already superseded by ${JSON.stringify(splitRelation(by[0]))}: supersede that one instead`)
      }
      return { next, prev, oldKey, link, old: parseRecord(old), ...supersedeTimes(parseRecord(old), toMillis("validFrom", item.validFrom)) }
    })
    return this.#write((w) =>
      plans.map(({ next, prev, oldKey, link, old, ended, validity }) => {
        const result = { from: next.from, relationType: next.relationType, to: next.to, replaces: { from: prev.from, relationType: prev.relationType, to: prev.to } }
        if (!old) return { ...result, superseded: false }
        if (ended) w.edit(prev.from, (d) => putFresh(d.relations, oldKey, factRecord(recordFields({ ...old, valid_to: ended }))))
        const key = relationKey(next.from, next.relationType, next.to)
        if (this.#shardDoc(next.from).relations?.[key] === undefined) {
          const rec = w.fact({ ...validity, replaces: link })
          w.edit(next.from, (d) => { d.relations[key] = rec })
        }
        return { ...result, superseded: true }
      }),
    )
  }

  /** Re-types an entity: a new record with the same creator, which also resolves a type conflict. */
  setEntityType(name, entityType) {
    checkName("entity name", name)
    checkName("entity type", entityType)
    const old = this.#shardDoc(name).entities?.[name]
    if (old === undefined) throw new CairnError("not_found", `Entity with name ${name} not found`)
    const r = parseRecord(old)
    const record = entityRecord({ type: entityType, by: r.by ?? this.agent, at: r.at ?? Date.now() })
    this.#write((w) => w.edit(name, (d) => putFresh(d.entities, name, record)))
  }

  /** The reference's `delete_entities`: the entity, its observations, and relations from and to it. */
  deleteEntities(names) {
    for (const name of names) checkName("entity name", name)
    const doomed = new Set(names)
    this.#write((w) => {
      for (const name of names) {
        w.edit(name, (d) => {
          if (d.entities[name] !== undefined) delete d.entities[name]
          for (const key of Object.keys(d.observations)) if (splitObservation(key)?.[0] === name) delete d.observations[key]
        })
      }
      // Relations live in their `from`'s shard: those to a deleted entity may be anywhere.
      this.shards.forEach((s, i) => {
        const keys = Object.keys(s.doc().relations ?? {}).filter((k) => {
          const p = splitRelation(k)
          return p && (doomed.has(p[0]) || doomed.has(p[2]))
        })
        if (keys.length) w.editShard(i, (d) => { for (const k of keys) if (d.relations[k] !== undefined) delete d.relations[k] })
      })
    })
  }

  /** The reference's `delete_observations`. */
  deleteObservations(items) {
    for (const { entityName, observations } of items) {
      checkName("entity name", entityName)
      for (const text of observations) checkText(text)
    }
    this.#write((w) => {
      for (const { entityName, observations } of items) {
        w.edit(entityName, (d) => {
          for (const text of observations) {
            const key = observationKey(entityName, text)
            if (d.observations[key] !== undefined) delete d.observations[key]
          }
        })
      }
    })
  }

  /** The reference's `delete_relations`. */
  deleteRelations(relations) {
    const input = relations.map(relationInput)
    this.#write((w) => {
      for (const r of input) {
        const key = relationKey(r.from, r.relationType, r.to)
        w.edit(r.from, (d) => { if (d.relations[key] !== undefined) delete d.relations[key] })
      }
    })
  }

  /** Shuts the repo down (storage flushed, sockets closed). Call waitForRelay first to keep writes. */
  async close() {
    await this.repo.shutdown()
  }

  // ---- the relay ---------------------------------------------------------------------------

  /**
   * Resolves once the relay holds every change of this graph that this process has: the point
   * after which exiting loses nothing. See relay.js.
   */
  waitForRelay(options = {}) {
    if (!this.adapter) return Promise.reject(new CairnError("no_relay", "this graph was opened without a relay: there is nothing to wait for"))
    return waitForRelay(this.repo, this.handles, { adapter: this.adapter, ...options })
  }

  /**
   * Resolves once this replica is `synced` with the relay (it holds everything the relay has
   * announced for every document); rejects like waitForRelay.
   */
  waitForSync({ timeout = 10_000 } = {}) {
    if (!this.adapter) return Promise.resolve()
    return waitUntil(this.repo, this.handles, () => this.freshness().state === "synced", {
      timeout,
      adapter: this.adapter,
      why: () => `not in step with the relay within ${timeout} ms (${this.freshness().state})`,
    })
  }

  /**
   * Freshness from the relay's heads, in Cairn's vocabulary (docs/freshness.md): `local` with no
   * adapter, `offline` with no relay connected, `behind` while the relay has announced heads this
   * replica does not hold (or has not yet said what it holds), else `synced`. `unconfirmed`
   * counts documents with changes the relay has not yet confirmed holding.
   */
  freshness() {
    if (!this.adapter) return { state: "local" }
    if (this.adapter.refused) return { state: "offline", since: this.#offlineSince, lastSync: this.#lastSync, error: this.adapter.refused.message }
    const denied = this.handles.find((h) => this.adapter.denied.has(h.documentId))
    if (denied) return { state: "offline", since: this.#offlineSince, lastSync: this.#lastSync, error: deniedError(denied.documentId).message }
    const relay = relayStorageId(this.repo)
    if (!relay) return { state: "offline", since: this.#offlineSince, lastSync: this.#lastSync }
    let behindSince
    let unconfirmed = 0
    for (const h of this.handles) {
      const info = h.getSyncInfo(relay)
      if (!info) {
        behindSince = Math.min(behindSince ?? Infinity, this.#offlineSince)
        continue
      }
      // Behind: the relay announced heads this replica does not hold yet.
      if (!A.hasHeads(h.doc(), decodeHeads(info.lastHeads))) {
        behindSince = Math.min(behindSince ?? Infinity, info.lastSyncTimestamp ?? Date.now())
      }
      if (!relayHolds(h, relay)) unconfirmed++
    }
    if (behindSince !== undefined) return { state: "behind", since: behindSince, unconfirmed }
    this.#lastSync = Date.now()
    return { state: "synced", asOf: this.#lastSync, unconfirmed }
  }
}

// What superseding a fact whose record is `old` at world time `t` writes (docs/schema.md, "The
// supersede link"): `ended`, the old fact's new valid_to (undefined: leave it alone), and the new
// fact's validity. With no `t`: now, or a millisecond after the old fact began if that is within
// the next second (a supersede a moment ago, or on a clock a little ahead), so quick successive
// supersedes chain in order.
function supersedeTimes(old, at) {
  const from = Number.isSafeInteger(old.valid_from) ? old.valid_from : undefined
  const now = Date.now()
  const t = at ?? (from !== undefined && from >= now && from < now + 1000 ? from + 1 : now)
  if (from !== undefined && t < from) return { validity: { validFrom: t, validTo: from } } // late: history
  if (from !== undefined && t === from) {
    throw new CairnError("invalid_name", `validity interval is empty: the old fact begins at ${from}, the supersede's time`)
  }
  const to = Number.isSafeInteger(old.valid_to) ? old.valid_to : undefined
  return { ended: to !== undefined && to <= t ? undefined : t, validity: { validFrom: t } }
}

// A parsed record back into factRecord's arguments, every field kept (unknown ones too).
function recordFields({ by, at, valid_from, valid_to, n, ...rest }) {
  return { by, at, validFrom: valid_from, validTo: valid_to, n, ...rest }
}

// Puts a record; if the same string is already the winning value, deletes it first so that the
// write is a new operation (docs/schema.md, "Writing").
function putFresh(map, key, record) {
  if (map[key] !== undefined && String(map[key]) === String(record)) delete map[key]
  map[key] = record
}

function observationInput(o) {
  const v = typeof o === "string" ? { content: o } : o ?? {}
  checkText(v.content)
  const validFrom = toMillis("validFrom", v.validFrom)
  const validTo = toMillis("validTo", v.validTo)
  checkValidity(validFrom, validTo)
  return { content: v.content, validFrom, validTo }
}

function relationInput(r) {
  checkName("relation from", r.from)
  checkName("relation type", r.relationType)
  checkName("relation to", r.to)
  const validFrom = toMillis("validFrom", r.validFrom)
  const validTo = toMillis("validTo", r.validTo)
  checkValidity(validFrom, validTo)
  return { from: r.from, relationType: r.relationType, to: r.to, validFrom, validTo }
}
