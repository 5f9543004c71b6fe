// `node --import tsx scripts/mesh-round-trip.ts`: what one direct request costs in CPU on the
// real libp2p mesh (TCP, noise, yamux, the request channel of src/mesh/rpc-mux.ts), with
// nothing of the agent around it. Two meshes in this process on loopback; the handler answers
// every request with an Ack at once. It measures the process's CPU (both ends together) per
// request:
//   - at a steady rate (20, 100, 500 requests/s), each request on its own, as an agent's
//     messages mostly travel at a moderate job rate; the idle CPU measured before them is
//     subtracted;
//   - back to back, one request in flight, then ten (after the rates: its garbage would be
//     collected during them).
// docs/benchmarks.md explains what the gap between the two says. It prints figures and ends
// with one JSON line, like the benchmarks; nothing here is a pass or a fail.
import '../src/polyfill.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2pMesh } from '../src/mesh/libp2p-mesh.ts'
import { type Message, MessageType } from '../src/protocol/messages.ts'
import { jsonLine, round, sleep } from './bench/util.ts'

const BACK_TO_BACK_REQUESTS = 5000
const RATES = [20, 100, 500]
const SECONDS_PER_RATE = 10
const IDLE_SECONDS = 5

const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

const dirs = [mkdtempSync(join(tmpdir(), 'bidmesh-rtt-')), mkdtempSync(join(tmpdir(), 'bidmesh-rtt-'))]
const server = await createLibp2pMesh({ dataDir: dirs[0], listen: ['/ip4/127.0.0.1/tcp/0'] })
const client = await createLibp2pMesh({ dataDir: dirs[1], listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: server.listenAddrs() })
try {
  const ack: Message = { type: MessageType.Ack, body: { ok: true } }
  server.handle(async () => ack)
  client.handle(async () => ack)
  await client.addPeerAddrs(server.peerId, server.listenAddrs())
  // A small body, as a reservation release is.
  const message: Message = { type: MessageType.ReservationRelease, body: { jobId: 'j-0123456789abcdef', epoch: 1 } }
  const send = async (): Promise<unknown> => await client.request(server.peerId, message)
  // Warm up: the connection, the channel, the JIT.
  for (let i = 0; i < 500; i++) await send()
  await sleep(2000)
  const idleStart = cpuMs()
  await sleep(IDLE_SECONDS * 1000)
  const idleCpuMsPerSec = (cpuMs() - idleStart) / IDLE_SECONDS

  const steady: Array<{ ratePerSec: number, cpuMsPerSec: number }> = []
  for (const rate of RATES) {
    const n = rate * SECONDS_PER_RATE
    const c0 = cpuMs()
    const t0 = performance.now()
    const inFlight: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) {
      const waitMs = t0 + i * 1000 / rate - performance.now()
      if (waitMs > 0) await sleep(waitMs)
      inFlight.push(send())
    }
    await Promise.all(inFlight)
    steady.push({ ratePerSec: rate, cpuMsPerSec: (cpuMs() - c0) / ((performance.now() - t0) / 1000) })
  }
  const backToBack: Array<{ inFlight: number, cpuUsPerRequest: number, wallUsPerRequest: number }> = []
  for (const inFlight of [1, 10]) {
    const c0 = cpuMs()
    const t0 = performance.now()
    let sent = 0
    await Promise.all(Array.from({ length: inFlight }, async () => { while (sent++ < BACK_TO_BACK_REQUESTS) await send() }))
    backToBack.push({ inFlight, cpuUsPerRequest: round(1000 * (cpuMs() - c0) / BACK_TO_BACK_REQUESTS, 0), wallUsPerRequest: round(1000 * (performance.now() - t0) / BACK_TO_BACK_REQUESTS, 0) })
  }


  console.log('mesh round trip: two libp2p meshes in one process on loopback; CPU of both ends per request')
  for (const b of backToBack) console.log(`  back to back, ${b.inFlight} in flight: ${b.cpuUsPerRequest} µs CPU, ${b.wallUsPerRequest} µs wall per request`)
  const atRates = steady.map(s => ({ ratePerSec: s.ratePerSec, cpuUsPerRequest: round(1000 * Math.max(0, s.cpuMsPerSec - idleCpuMsPerSec) / s.ratePerSec, 0) }))
  for (const s of atRates) console.log(`  ${s.ratePerSec} requests/s, each on its own: ${s.cpuUsPerRequest} µs CPU per request (idle subtracted)`)
  console.log(`  idle: ${round(idleCpuMsPerSec / 10, 2)} % of a core`)
  console.log(jsonLine({ benchmark: 'mesh-round-trip', backToBack, atRates, idleCpuPercentOfCore: round(idleCpuMsPerSec / 10, 2) }))
} finally {
  await client.stop()
  await server.stop()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
}
