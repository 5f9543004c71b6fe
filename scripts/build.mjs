// `npm run build`: bundles the CLI and agent (src/, TypeScript) and the packages they use
// into dist/cli/main.mjs with esbuild, so a production agent runs plain JavaScript: no tsx
// loader hooks, source maps or esbuild service in the agent's process. bin/bidmesh.js runs
// the bundle only while it is newer than every file under src/, and the TypeScript sources
// through tsx otherwise, so an edit is never shadowed by a stale build.
//
// Packages are bundled too, whitespace-minified: one module instead of some 660 (each keeps
// its record, its source text and its compiled top level in memory), about 13 MB less RSS
// per idle agent (docs/benchmarks.md). Left external: native addons (better-sqlite3, and
// msgpackr-extract, which msgpackr loads only if present), loaded from node_modules at run
// time through the require the banner makes. Names are kept (keepNames), so an error's or a
// class's name reads the same as from the sources.
//
// Not bundled at all: what dockerode requires at load for features the agent never uses:
// SSH Docker hosts (ssh2, which also sets up a 16 MB WebAssembly heap), BuildKit sessions
// (@grpc/grpc-js, @grpc/proto-loader) and image builds from a directory (tar-fs). In the
// bundle they are a stub whose every export throws DockerFeatureNotBundledError when used.
// The agent talks to the local engine over its Unix socket only
// (src/runtime/docker-executor.ts).
//
// The polyfill is its own bundle (dist/polyfill.mjs), loaded before the main one, whose
// imports are hoisted above any of its own code. The bundle sits at dist/cli/, the depth
// src/cli/main.ts has, because the sources find package.json ('../../package.json') and the
// dashboard ('./dashboard.html') relative to themselves.
//
// Written to a temporary directory and renamed into place: an interrupted build
// leaves the previous one (or none), never half a bundle.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** Native addons: loaded from node_modules at run time. */
const EXTERNAL = ['better-sqlite3', 'msgpackr-extract']
/** Packages dockerode requires but the agent never uses (see above). */
const NOT_BUNDLED = /^(ssh2|@grpc\/grpc-js|@grpc\/proto-loader|tar-fs)$/

const dockerClient = {
  name: 'docker-client',
  setup (b) {
    b.onResolve({ filter: NOT_BUNDLED }, args => ({ path: args.path, namespace: 'not-bundled' }))
    // A property read at load (docker-modem reads require('ssh2').Client) must not throw;
    // calling or constructing what it returns does.
    b.onLoad({ filter: /.*/, namespace: 'not-bundled' }, args => ({
      loader: 'js',
      contents: `class DockerFeatureNotBundledError extends Error {
  constructor (what) {
    super(what + ' is not in the bidmesh agent bundle: the agent uses the local Docker engine only (no SSH hosts, BuildKit sessions or image builds)')
    this.name = 'DockerFeatureNotBundledError'
    this.code = 'ERR_DOCKER_FEATURE_NOT_BUNDLED'
  }
}
module.exports = new Proxy({}, {
  get (_, key) {
    if (typeof key !== 'string' || key === '__esModule' || key === 'then') return undefined
    return function notBundled () { throw new DockerFeatureNotBundledError(${JSON.stringify(args.path)} + '.' + key) }
  }
})
`
    }))
  }
}
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
    external: EXTERNAL,
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    plugins: [dockerClient],
    // Bundled CommonJS code requires Node's modules and the native addons at run time; an ES
    // module has no require of its own, so the bundle makes one.
    banner: { js: "import { createRequire as bidmeshCreateRequire } from 'node:module'; const require = bidmeshCreateRequire(import.meta.url);" },
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
