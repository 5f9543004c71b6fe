#!/usr/bin/env -S node --max-semi-space-size=2 --v8-pool-size=1
// Entry point. Runs the bundle `npm run build` made (dist/, plain JavaScript) while it is newer
// than every file under src/; otherwise the TypeScript sources through tsx, so an edited tree
// never runs a stale build. Either way the polyfill loads first. The shebang's flags are
// AGENT_NODE_FLAGS (src/constants.ts), for an agent started as `bidmesh agent`.
import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function newestMtimeMs (dir) {
  let newest = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`
    newest = Math.max(newest, e.isDirectory() ? newestMtimeMs(p) : statSync(p).mtimeMs)
  }
  return newest
}

function builtIsFresh () {
  try {
    return statSync(`${root}dist/BUILT`).mtimeMs >= newestMtimeMs(`${root}src`)
  } catch {
    return false
  }
}

let main
if (process.env.BIDMESH_FROM_SOURCE !== '1' && builtIsFresh()) {
  await import('../dist/polyfill.mjs')
  ;({ main } = await import('../dist/cli/main.mjs'))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../src/polyfill.ts')
  ;({ main } = await import('../src/cli/main.ts'))
}
await main(process.argv)
