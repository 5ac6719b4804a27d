// The relay edge over the stock websocket adapter: the token in the URL, a refused token or a
// refused change reported instead of crashing the process, and "does the relay hold this?" read
// from the relay's own heads (docs/protocol.md, "Knowing the relay holds a change"). No message
// of its own: everything here is the stock automerge-repo protocol.
import * as A from "@automerge/automerge"
import { cbor, decodeHeads } from "@automerge/automerge-repo/slim"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { CairnError } from "./errors.js"

/** `ws://host:port/?token=...`: the stock adapter takes a URL only, so the token rides in it. */
export function relayUrl(url, token) {
  const u = new URL(url)
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new CairnError("invalid_name", `relay URL must start with ws:// or wss://, got ${JSON.stringify(url)}`)
  }
  if (token !== undefined) u.searchParams.set("token", token)
  return u.toString()
}

// A socket being dropped may still fail (closing one mid-handshake fails it): give it a listener.
const keepQuiet = (socket) => socket?.addEventListener?.("error", () => {})

const REFUSED = /Unexpected server response: (401|403)\b/

/**
 * The stock Node adapter with two differences, both about errors. The stock one throws any
 * socket error but ECONNREFUSED out of an event listener, which ends a Node process; a relay that
 * refuses the token answers the upgrade 401, so a wrong token crashed the agent. Here a 401 (or
 * a 403 from a proxy in front) stops the adapter and emits `"refused"` with a CairnError (code
 * "refused"); any other socket error (a reset, a 429 over the per-token connection limit, a name
 * that does not resolve) is retried like ECONNREFUSED. And an automerge-repo
 * `error` message from the relay (a change the schema check refused, say) is emitted as
 * `"relay-error"` instead of only being logged at debug level.
 */
export class RelayAdapter extends WebSocketClientAdapter {
  /** @type {CairnError | undefined} */
  refused = undefined
  /** @type {string | undefined} */
  lastRelayError = undefined
  /** Documents the relay said it will not share with this connection. @type {Set<string>} */
  denied = new Set()

  constructor(url, { token, retryInterval = 1000 } = {}) {
    super(relayUrl(url, token), retryInterval)
  }

  // A class field, like the stock handler, so it is what `connect` registers.
  onError = (event) => {
    const error = event?.error
    if (error && REFUSED.test(String(error.message))) {
      const shown = this.url.replace(/([?&]token=)[^&]*/, "$1…")
      this.refused = new CairnError("refused", `the relay at ${shown} refused the token (${error.message}): check the token and the graph it grants`, { cause: error })
      this.disconnect()
      this.emit("refused", this.refused)
    }
    // Anything else (reset, unreachable, name lookup): the adapter's retry timer tries again.
  }

  connect(peerId, peerMetadata) {
    // The retry timer calls connect again; after a refusal there is nothing to retry.
    if (this.refused) return
    // The stock adapter drops the old socket's listeners before opening a new one; an error
    // that socket raises later would then have no listener, which ends a Node process.
    keepQuiet(this.socket)
    super.connect(peerId, peerMetadata)
  }

  disconnect() {
    if (!this.socket || !this.peerId) return
    keepQuiet(this.socket)
    super.disconnect()
  }

  receiveMessage(bytes) {
    let message
    try {
      message = cbor.decode(new Uint8Array(bytes))
    } catch {
      // The stock handler logs and drops undecodable bytes; let it.
    }
    // The relay answers `doc-unavailable` to a `sync` only for a document outside the
    // connection's access (docs/protocol.md): the token does not grant that graph.
    if (message?.type === "doc-unavailable") {
      this.denied.add(String(message.documentId))
      this.emit("denied", String(message.documentId))
    }
    if (message?.type === "error") {
      this.lastRelayError = String(message.message)
      this.emit("relay-error", new CairnError("rejected", `the relay refused: ${this.lastRelayError}`))
    }
    super.receiveMessage(bytes)
  }
}

export const deniedError = (documentId) =>
  new CairnError("refused", `the relay will not share document ${documentId} with this connection: the token does not grant this graph`)

/** The storage id of the first connected peer that persists (a Cairn relay always does). */
export function relayStorageId(repo) {
  for (const peer of repo.peers) {
    const meta = repo.peerMetadataByPeerId[peer]
    if (meta?.storageId && !meta.isEphemeral) return meta.storageId
  }
  return undefined
}

/**
 * Whether the peer with `storageId` holds every change of `handle`: its last heads, as its own
 * sync messages or its `remote-heads-changed` announcements told them, cover ours. A relay
 * persists before it says it has a change, so this is the durability point.
 */
export function relayHolds(handle, storageId) {
  const info = storageId && handle.getSyncInfo(storageId)
  if (!info) return false
  const ours = handle.heads()
  if (ours.every((h) => info.lastHeads.includes(h))) return true
  // The relay moved on (others wrote): ours are covered if they are ancestors of its heads. That
  // can be judged only once we hold the relay's heads too, which sync brings shortly.
  const doc = handle.doc()
  const theirs = decodeHeads(info.lastHeads)
  if (!A.hasHeads(doc, theirs)) return false
  const after = new Set(A.getChangesMetaSince(doc, theirs).map((c) => c.hash))
  return decodeHeads(ours).every((h) => !after.has(h))
}

/**
 * Resolves once the relay holds every change of every handle; rejects with a CairnError if the
 * relay refuses the token or a change ("refused", "rejected") or `timeout` ms pass ("timeout").
 */
export function waitForRelay(repo, handles, { timeout = 10_000, adapter } = {}) {
  const pending = () => handles.filter((h) => !relayHolds(h, relayStorageId(repo))).length
  return waitUntil(repo, handles, () => pending() === 0, {
    timeout,
    adapter,
    why: () => `the relay did not confirm the write within ${timeout} ms (${relayStorageId(repo) ? `${pending()} document(s) not yet confirmed` : "no relay connected"}); it is kept locally and sent when the relay answers`,
  })
}

/**
 * Resolves once `ready()` holds, re-checked on every handle's `remote-heads` and `change` events
 * and when a peer connects, with a slow poll as a backstop; bounded by `timeout` either way.
 */
export function waitUntil(repo, handles, ready, { timeout = 10_000, adapter, why }) {
  return new Promise((resolve, reject) => {
    const off = []
    const done = (err) => {
      for (const f of off) f()
      if (err) reject(err)
      else resolve()
    }
    const listen = (emitter, event, f) => {
      emitter.on(event, f)
      off.push(() => emitter.off(event, f))
    }
    const denied = () => handles.find((h) => adapter?.denied.has(h.documentId))
    const check = () => {
      const d = denied()
      if (adapter?.refused) done(adapter.refused)
      else if (d) done(deniedError(d.documentId))
      else if (ready()) done()
    }
    for (const h of handles) {
      listen(h, "remote-heads", check)
      listen(h, "change", check)
    }
    if (repo.networkSubsystem) listen(repo.networkSubsystem, "peer", check)
    if (adapter) {
      listen(adapter, "refused", (e) => done(e))
      listen(adapter, "relay-error", (e) => done(e))
      listen(adapter, "denied", check)
    }
    const timer = setTimeout(() => done(new CairnError("timeout", why())), timeout)
    const poll = setInterval(check, 250)
    off.push(() => clearTimeout(timer), () => clearInterval(poll))
    check()
  })
}
