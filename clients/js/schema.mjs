// Cairn's document schema (docs/schema.md) as stock JavaScript needs it: the document ids a graph
// name derives, the shard an entity lives in, and the separator inside observation and relation
// keys. Used by interop.mjs (a worked example of a JavaScript agent) and golden.mjs.
import { createHash } from "node:crypto"
import { stringifyAutomergeUrl } from "@automerge/automerge-repo"

const sha256 = (s) => createHash("sha256").update(s, "utf8").digest()

// A document's automerge URL: the first 16 bytes of SHA-256 of its label, as a UUID.
export const docUrl = (label) => {
  const id = new Uint8Array(sha256(label).subarray(0, 16))
  id[6] = (id[6] & 0x0f) | 0x40
  id[8] = (id[8] & 0x3f) | 0x80
  return stringifyAutomergeUrl({ documentId: id })
}

// The shard (0..31) that holds an entity.
export const shardOf = (name) => Number(sha256(name).readBigUInt64BE(0) % 32n)

// Between an entity's name and the text (or relation type and target) in a map key.
export const SEP = "\u001f"
