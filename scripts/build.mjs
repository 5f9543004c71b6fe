// `npm run build`: bundles the CLI and agent (src/, TypeScript) into dist/cli/main.mjs with
// esbuild, packages left external, so a production agent runs plain JavaScript: no tsx loader
// hooks, source maps or esbuild service in the agent's process (≈ 50 MB less RSS per idle
// agent; docs/benchmarks.md). bin/bidmesh.js runs the bundle only while it is newer than every
// file under src/, and the TypeScript sources through tsx otherwise, so an edit is never
// shadowed by a stale build.
//
// The polyfill is its own bundle (dist/polyfill.mjs), loaded before the main one, whose
// imports of packages are hoisted above any of its own code. The bundle sits at dist/cli/,
// the depth src/cli/main.ts has, because the sources find
// package.json ('../../package.json') and the dashboard ('./dashboard.html') relative to
// themselves. Written to a temporary directory and renamed into place: an interrupted build
// leaves the previous one (or none), never half a bundle.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
// Its own temporary directory, so two builds at once (two set-ups) do not delete each other's.
const tmp = mkdtempSync(join(root, '.dist-'))
chmodSync(tmp, 0o755) // mkdtemp makes it 0700; the agent may run as another user than the build
const out = join(root, 'dist')
// BUILT carries the time the build started: a source edited while it ran is newer, and
// bin/bidmesh.js then runs the sources rather than this bundle.
const startedAt = new Date()
mkdirSync(join(tmp, 'cli'), { recursive: true })
try {
  await build({
    entryPoints: [join(root, 'src/polyfill.ts'), join(root, 'src/cli/main.ts')],
    outbase: join(root, 'src'),
    outdir: tmp,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning'
  })
  copyFileSync(join(root, 'src/api/dashboard.html'), join(tmp, 'cli/dashboard.html'))
  writeFileSync(join(tmp, 'BUILT'), `${startedAt.toISOString()}\n`)
  utimesSync(join(tmp, 'BUILT'), startedAt, startedAt)
  rmSync(out, { recursive: true, force: true })
  renameSync(tmp, out)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
