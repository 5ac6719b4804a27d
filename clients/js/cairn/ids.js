// What a graph name derives (docs/schema.md, "A graph is 33 documents" and "Genesis"): the
// document ids, the shard an entity lives in, the key separator and the genesis change every
// replica produces byte for byte. Nothing here touches the network.
import { createHash } from "node:crypto"
import * as A from "@automerge/automerge"
import { parseAutomergeUrl, stringifyAutomergeUrl } from "@automerge/automerge-repo"
import { CairnError } from "./errors.js"

/** Between an entity's name and the text (or relation type and target) in a map key: U+001F. */
export const SEP = "\u001f"
/** Every graph has 32 shards; fixed by the schema, never configurable. */
export const SHARD_COUNT = 32
/** The schema version this module reads and writes. */
export const SCHEMA_VERSION = 1

const GRAPH_NAME = /^[a-z0-9._-]{1,64}$/
const sha256 = (bytes) => createHash("sha256").update(bytes).digest()

/** Throws a CairnError unless `graph` is a valid graph name (`[a-z0-9._-]{1,64}`). */
export function checkGraphName(graph) {
  if (typeof graph !== "string" || !GRAPH_NAME.test(graph)) {
    throw new CairnError("invalid_name", `invalid graph name ${JSON.stringify(graph)}: use 1 to 64 of a-z 0-9 . _ -`)
  }
  return graph
}

/** A document's automerge URL: the first 16 bytes of SHA-256 of its label, as a UUID (v4 bits). */
export function docUrl(label) {
  const id = new Uint8Array(sha256(Buffer.from(label, "utf8")).subarray(0, 16))
  id[6] = (id[6] & 0x0f) | 0x40
  id[8] = (id[8] & 0x3f) | 0x80
  return stringifyAutomergeUrl({ documentId: id })
}

/** The 33 document URLs of a graph: its root, then its shards in shard order. */
export function graphUrls(graph) {
  checkGraphName(graph)
  const shards = []
  for (let n = 0; n < SHARD_COUNT; n++) shards.push(docUrl(`cairn/v1/${graph}/shard/${n}`))
  return { root: docUrl(`cairn/v1/${graph}/root`), shards }
}

/** The shard (0..31) that holds an entity: SHA-256 of its UTF-8 name, first 8 bytes big-endian, mod 32. */
export function shardOf(name) {
  return Number(sha256(Buffer.from(name, "utf8")).readBigUInt64BE(0) % BigInt(SHARD_COUNT))
}

/**
 * The genesis change of one of a graph's documents, as a saved Automerge document (what
 * `repo.import` takes). Every replica, in any language, produces these bytes exactly: same actor
 * (derived from the document id), time 0, no message, the same operations in the same order.
 * `shard` is the shard index, or undefined for the root.
 */
export function genesis(graph, shard) {
  const urls = graphUrls(graph)
  const url = shard === undefined ? urls.root : urls.shards[shard]
  if (url === undefined) throw new CairnError("invalid_name", `no shard ${shard}: shards are 0 to ${SHARD_COUNT - 1}`)
  const id = parseAutomergeUrl(url).binaryDocumentId
  const actor = sha256(Buffer.concat([Buffer.from("cairn/v1/genesis/", "utf8"), Buffer.from(id)]))
    .subarray(0, 16)
    .toString("hex")
  const doc = A.change(A.init({ actor }), { time: 0 }, (d) => {
    // The order of these assignments is the order of the operations, which the bytes depend on.
    d.schema = SCHEMA_VERSION
    d.graph = new A.ImmutableString(graph)
    if (shard === undefined) {
      d.cairn = new A.ImmutableString("root")
      d.shard_count = SHARD_COUNT
      d.shards = urls.shards.map((u) => new A.ImmutableString(u))
    } else {
      d.cairn = new A.ImmutableString("shard")
      d.shard = shard
      d.entities = {}
      d.observations = {}
      d.relations = {}
    }
  })
  return { url, bytes: A.save(doc) }
}
