// Drives the reference memory server (@modelcontextprotocol/server-memory) over stdio with the
// official MCP SDK client, so that it writes its own memory.jsonl, then prints its read_graph.
//
//   node reference-write.mjs <memory.jsonl> <calls.json>
//
// calls.json is a list of [tool, arguments]. Each call's result (or thrown error) is printed as
// one JSON line {"call": i, "result": ...}; the last line is {"graph": <read_graph structured>}.
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"

const [file, callsFile] = process.argv.slice(2)
const here = dirname(fileURLToPath(import.meta.url))
const server = join(here, "node_modules/@modelcontextprotocol/server-memory/dist/index.js")
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [server],
  env: { ...process.env, MEMORY_FILE_PATH: file },
  stderr: "ignore",
})
const client = new Client({ name: "cairn-reference-write", version: "1" })
await client.connect(transport)
const calls = JSON.parse(readFileSync(callsFile, "utf8"))
for (const [i, [name, args]] of calls.entries()) {
  try {
    const result = await client.callTool({ name, arguments: args })
    console.log(JSON.stringify({ call: i, result }))
  } catch (e) {
    console.log(JSON.stringify({ call: i, thrown: String(e.message) }))
  }
}
const graph = await client.callTool({ name: "read_graph", arguments: {} })
console.log(JSON.stringify({ graph: graph.structuredContent }))
await client.close()
