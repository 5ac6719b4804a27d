// Types for cairn-graph (index.js). Field names follow the reference MCP memory server's JSON
// (camelCase); docs/schema.md is what they are stored as.
import type { AutomergeUrl, DocHandle, Repo, StorageAdapterInterface, StorageId } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

export declare const SEP: "\u001f"
export declare const SHARD_COUNT: 32
export declare const SCHEMA_VERSION: 1

export type CairnErrorCode = "invalid_name" | "too_large" | "not_found" | "refused" | "rejected" | "timeout" | "no_relay" | "conflict"
export declare class CairnError extends Error {
  readonly code: CairnErrorCode
  constructor(code: CairnErrorCode, message: string, options?: { cause?: unknown })
}

/** Milliseconds since the epoch, a Date, or an ISO 8601 string. */
export type Time = number | Date | string

export declare function checkGraphName(graph: string): string
export declare function docUrl(label: string): AutomergeUrl
export declare function graphUrls(graph: string): { root: AutomergeUrl; shards: AutomergeUrl[] }
export declare function shardOf(name: string): number
export declare function genesis(graph: string, shard?: number): { url: AutomergeUrl; bytes: Uint8Array }

/** When a fact held in the world; an absent end is unbounded. */
export interface Validity {
  validFrom?: number
  validTo?: number
}
export interface Fact extends Validity {
  /** The agent that recorded it. */
  by: string
  /** When it was recorded, in milliseconds since the epoch. */
  at: number
  /** Its position among the facts one write recorded (from 1). */
  n?: number
}
export interface Triple {
  from: string
  relationType: string
  to: string
}
export interface Observation extends Fact {
  content: string
  /** The text of the observation of the same entity this one superseded. */
  replaces?: string
}
export interface Relation extends Fact, Triple {
  /** The relation this one superseded. */
  replaces?: Triple
}
/** Two or more facts that supersede the same fact and hold at the same time (written apart). */
export type SupersedeConflict =
  | { entityName: string; replaces: string; by: (Observation & { entityName: string })[] }
  | { replaces: Triple; by: Relation[] }
export interface Entity {
  name: string
  /** "" for an entity that exists only through its facts (its record was deleted concurrently). */
  entityType: string
  createdBy: string
  createdAt: number
  observations: Observation[]
  /** Concurrent entity types, winner included, until someone writes a resolution. */
  conflicts: { entityType: string; by: string }[]
}
export interface ReadOptions {
  /** World time the facts must hold at (default: now). */
  asOf?: number
  /** Every fact, whatever its validity. */
  includeSuperseded?: boolean
}
export interface GraphRead {
  entities: Entity[]
  relations: Relation[]
  /** Facts left out because they do not hold at `asOf`. */
  omitted: number
  /** The same by reason, as Cairn's MCP reads say it. */
  leftOut: { superseded: number; expired: number; notYetValid: number }
  /** Concurrent supersedes holding at `asOf`, until someone supersedes again. */
  conflicts: SupersedeConflict[]
}
/** The reference memory server's shapes. */
export interface ReferenceGraph {
  entities: { name: string; entityType: string; observations: string[] }[]
  relations: { from: string; to: string; relationType: string }[]
}
export type ObservationInput = string | { content: string; validFrom?: Time; validTo?: Time }
export interface EntityInput {
  name: string
  entityType: string
  observations?: ObservationInput[]
}
export interface RelationInput {
  from: string
  relationType: string
  to: string
  validFrom?: Time
  validTo?: Time
}

export type Freshness =
  | { state: "local" }
  | { state: "offline"; since: number; lastSync?: number; error?: string }
  | { state: "behind"; since: number; unconfirmed: number }
  | { state: "synced"; asOf: number; unconfirmed: number }

export interface WaitOptions {
  /** Milliseconds before rejecting with code "timeout" (default 10000). */
  timeout?: number
}

export declare class Graph {
  readonly repo: Repo
  readonly name: string
  readonly agent: string
  readonly root: DocHandle<unknown>
  readonly shards: DocHandle<unknown>[]
  readonly adapter?: RelayAdapter
  readonly handles: DocHandle<unknown>[]
  read(options?: ReadOptions): GraphRead
  entity(name: string, options?: ReadOptions): Entity | undefined
  readGraph(options?: ReadOptions): ReferenceGraph
  openNodes(names: string[], options?: ReadOptions): ReferenceGraph
  searchNodes(query: string, options?: ReadOptions): ReferenceGraph
  createEntities(entities: EntityInput[]): ReferenceGraph["entities"]
  addObservations(items: { entityName: string; contents: ObservationInput[] }[]): { entityName: string; addedObservations: string[] }[]
  createRelations(relations: RelationInput[]): ReferenceGraph["relations"]
  supersedeObservations(items: { entityName: string; replaces: string; content: string; validFrom?: Time }[]): {
    entityName: string
    replaces: string
    content: string
    /** false when the old observation does not exist (nothing was written for it). */
    superseded: boolean
  }[]
  supersedeRelations(items: (Triple & { replaces: Triple; validFrom?: Time })[]): (Triple & { replaces: Triple; superseded: boolean })[]
  setEntityType(name: string, entityType: string): void
  deleteEntities(names: string[]): void
  deleteObservations(items: { entityName: string; observations: string[] }[]): void
  deleteRelations(relations: { from: string; relationType: string; to: string }[]): void
  waitForRelay(options?: WaitOptions): Promise<void>
  waitForSync(options?: WaitOptions): Promise<void>
  freshness(): Freshness
  close(): Promise<void>
}

export declare function openGraph(repo: Repo, graph: string, options: { agent: string; adapter?: RelayAdapter }): Promise<Graph>

export declare function connect(options: {
  /** ws:// or wss:// URL of a Cairn relay; without it the graph is local only. */
  relay?: string
  token?: string
  graph: string
  agent: string
  storage?: StorageAdapterInterface
  /** Milliseconds between reconnection attempts (default 1000). */
  retryInterval?: number
}): Promise<Graph>

export declare function relayUrl(url: string, token?: string): string
export declare class RelayAdapter extends WebSocketClientAdapter {
  /** Set once the relay refused the token (HTTP 401/403); the adapter then stops. */
  refused?: CairnError
  /** The last automerge-repo `error` message the relay sent. */
  lastRelayError?: string
  /** Documents the relay said it will not share with this connection (its token does not grant them). */
  denied: Set<string>
  constructor(url: string, options?: { token?: string; retryInterval?: number })
}
export declare function relayStorageId(repo: Repo): StorageId | undefined
export declare function relayHolds(handle: DocHandle<unknown>, storageId: StorageId | undefined): boolean
export declare function waitForRelay(repo: Repo, handles: DocHandle<unknown>[], options?: WaitOptions & { adapter?: RelayAdapter }): Promise<void>
export declare function holdsAt(fact: Validity, t: number): boolean
