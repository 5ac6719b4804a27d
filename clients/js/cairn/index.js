// cairn-graph: a small typed helper for JavaScript agents on a Cairn graph, over the stock
// automerge-repo packages. It adds no protocol of its own: docs/schema.md and docs/protocol.md
// show how to do everything here with the stock packages alone.
import { Repo } from "@automerge/automerge-repo"
import { openGraph } from "./graph.js"
import { RelayAdapter } from "./relay.js"

export { CairnError } from "./errors.js"
export { SCHEMA_VERSION, SEP, SHARD_COUNT, checkGraphName, docUrl, genesis, graphUrls, shardOf } from "./ids.js"
export { holdsAt } from "./read.js"
export { Graph, openGraph } from "./graph.js"
export { RelayAdapter, relayHolds, relayStorageId, relayUrl, waitForRelay } from "./relay.js"

/**
 * A Repo with a RelayAdapter (if `relay` is given) and the graph opened on it. The graph is
 * usable at once, relay or not; `graph.close()` shuts the repo down.
 */
export async function connect({ relay, token, graph, agent, storage, retryInterval } = {}) {
  const adapter = relay ? new RelayAdapter(relay, { token, retryInterval }) : undefined
  // The graph's documents are opened before the adapter connects: opening 33 documents takes the
  // event loop for a while, and the stock adapter's retry timer would otherwise open a second
  // socket meanwhile. Once connected, automerge-repo syncs every document the repo holds.
  const repo = new Repo({ network: [], storage })
  const g = await openGraph(repo, graph, { agent, adapter })
  if (adapter) repo.networkSubsystem.addNetworkAdapter(adapter)
  return g
}
