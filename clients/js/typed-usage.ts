// Type-checked (never run) by clients/tests/javascript.rs with `tsc --noEmit`: the helper's
// types (cairn/index.d.ts) as a TypeScript agent would use them. A wrong field name, a missing
// option or a wrong result type here fails the test.
import { CairnError, connect, graphUrls, shardOf, type Entity, type Freshness, type GraphRead } from "cairn-graph"

export async function agent(relay: string, token: string): Promise<number> {
  const graph = await connect({ relay, token, graph: "team", agent: "ts-agent@example" })
  const created: { name: string; entityType: string; observations: string[] }[] = graph.createEntities([
    { name: "Alice", entityType: "person", observations: ["likes tea", { content: "works at Acme", validFrom: "2025-01-01", validTo: new Date() }] },
  ])
  graph.addObservations([{ entityName: "Alice", contents: ["second"] }])
  graph.createRelations([{ from: "Alice", relationType: "works_at", to: "Acme", validFrom: 1735689600000 }])
  const s = graph.supersedeObservations([{ entityName: "Alice", replaces: "works at Acme", content: "works at Initech", validFrom: "2026-01-01" }])
  const moved: boolean = s[0]!.superseded
  graph.supersedeRelations([{ from: "Alice", relationType: "works_at", to: "Initech", replaces: { from: "Alice", relationType: "works_at", to: "Acme" } }])
  try {
    await graph.waitForRelay({ timeout: 5000 })
  } catch (e) {
    if (e instanceof CairnError && (e.code === "refused" || e.code === "timeout")) return 2
    throw e
  }
  const all: GraphRead = graph.read({ includeSuperseded: true })
  const alice: Entity | undefined = graph.entity("Alice", { asOf: Date.now() })
  const since: number | undefined = alice?.observations[0]?.validFrom
  const replaced: string | undefined = alice?.observations[0]?.replaces
  const forks: number = all.conflicts.filter((c) => "entityName" in c && c.replaces === replaced).length
  const f: Freshness = graph.freshness()
  const asOf = f.state === "synced" ? f.asOf : f.state === "local" ? 0 : f.since
  await graph.close()
  return all.omitted + forks + Number(moved) + created.length + shardOf("Alice") + graphUrls("team").shards.length + (since ?? 0) + asOf
}
