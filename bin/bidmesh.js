#!/usr/bin/env node
// Entry point: load the TypeScript sources through tsx, polyfill first.
import { register } from 'tsx/esm/api'
register()
await import('../src/polyfill.ts')
const { main } = await import('../src/cli/main.ts')
await main(process.argv)
