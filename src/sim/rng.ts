// Seeded randomness for the simulator, on the scheduler's own PRNG (mulberry32). Each concern
// (workload, network, gossip sampling, executors) draws from its own stream, derived from the
// run's seed and a name, so that changing how often one concern draws (say, a higher loss
// rate) does not reshuffle the workload.
import { hash32, seededRandom } from '../scheduler/hash.ts'

export class Rng {
  readonly next: () => number

  constructor (seed: number, stream: string) {
    this.next = seededRandom(hash32(`${seed >>> 0}:${stream}`))
  }

  /** uniform in [lo, hi) */
  uniform (lo: number, hi: number): number { return lo + (hi - lo) * this.next() }

  /** integer in [0, n) */
  int (n: number): number { return Math.floor(this.next() * n) }

  /** exponential with the given mean */
  exponential (mean: number): number { return -mean * Math.log(1 - this.next()) }

  chance (p: number): boolean { return p > 0 && this.next() < p }

  pick<T> (items: readonly T[]): T { return items[this.int(items.length)] }

  /** picks by weight: weights need not sum to 1 */
  weighted<T> (items: ReadonlyArray<readonly [T, number]>): T {
    let total = 0
    for (const [, w] of items) total += w
    let x = this.next() * total
    for (const [v, w] of items) { x -= w; if (x < 0) return v }
    return items[items.length - 1][0]
  }

  shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const t = items[i]; items[i] = items[j]; items[j] = t
    }
    return items
  }
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** A peer id shaped like a real libp2p Ed25519 id (52 characters, `12D3KooW…`): message and
 *  advert sizes then match what the real mesh would carry. */
export function fakePeerId (rng: Rng): string {
  const chars = ['12D3KooW']
  for (let i = 0; i < 44; i++) chars.push(BASE58[rng.int(58)])
  // join() gives a flat string: Map lookups by id then hash it once, not a rope every time
  return chars.join('')
}
