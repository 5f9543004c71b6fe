// Partial views for capacity gossip in large meshes. The real mesh is small and every agent
// hears every advert (gossipsub on one topic). At 10,000 agents that would be 10,000 adverts a
// second into every agent, so here each agent hears the adverts of a bounded random sample
// of peers (its view, `viewSize` peers, Sparrow-style random probing of a large cluster),
// refreshed periodically by a peer-sampling service (in the manner of Cyclon): every
// `refreshMs` an agent drops members that left or died and swaps `rotate` members for fresh
// random peers. A joining agent samples `viewSize` peers and is inserted into `viewSize`
// random agents' views, so its in-degree starts at the mean. Owners also learn exact
// capacity from every bid and refusal (they carry the bidder's capacity), so the nodes
// they just probed stay in their view beyond the sample.
//
// Bytes an agent receives are then viewSize × advert rate × advert size: constant in mesh size.
import type { Rng } from './rng.ts'

export interface PartialViewConfig {
  /** peers whose adverts each agent hears; 0 means all (full gossip, like the real mesh) */
  viewSize: number
  refreshMs: number
  /** members swapped for fresh random peers at each refresh */
  rotate: number
  /** the periodic advert is a heartbeat: skipped while a change-driven advert went out
   *  less than an advert interval ago (receivers' liveness needs one advert per interval) */
  heartbeat: boolean
  /** with heartbeat: an advert showing less free capacity waits until minGapMs after the
   *  agent's previous advert (more room is advertised at once) */
  minGapMs: number
}

export const PARTIAL_VIEW_DEFAULTS: PartialViewConfig = { viewSize: 32, refreshMs: 5000, rotate: 4, heartbeat: true, minGapMs: 250 }

export class PartialViews {
  /** sample[i]: the peers whose adverts agent i hears */
  private readonly sample: number[][]
  /** subscribers[j]: the agents with j in their sample, that is, who hears j's adverts */
  private readonly subscribers: Array<Set<number>>
  /** agents that are up, for uniform random picks; upPos[i] is i's index in it or -1 */
  private readonly up: number[] = []
  private readonly upPos: Int32Array
  /** called before agent i's sample changes: `removed` leaves it, `added` joins it (the shell
   *  keeps i's lazy view in step with what i hears) */
  beforeChange: ((i: number, removed: number | undefined, added: number | undefined) => void) | undefined

  constructor (private readonly agents: number, private readonly rng: Rng, readonly config: PartialViewConfig) {
    this.sample = Array.from({ length: agents }, () => [])
    this.subscribers = Array.from({ length: agents }, () => new Set<number>())
    this.upPos = new Int32Array(agents).fill(-1)
  }

  get full (): boolean { return this.config.viewSize <= 0 || this.config.viewSize >= this.agents - 1 }

  get upCount (): number { return this.up.length }

  /** a uniformly random agent that is up, or undefined */
  randomUp (): number | undefined {
    return this.up.length === 0 ? undefined : this.up[this.rng.int(this.up.length)]
  }

  upAgents (): readonly number[] { return this.up }

  /** Who hears agent j's adverts. */
  receiversOf (j: number): Iterable<number> {
    return this.full ? this.up : this.subscribers[j]
  }

  sampleOf (i: number): readonly number[] { return this.full ? this.up : this.sample[i] }

  /** The agents up at the start: each samples uniformly, nobody is inserted anywhere. */
  bootstrap (initial: number[]): void {
    for (const i of initial) this.markUp(i)
    if (this.full) return
    for (const i of initial) this.fill(i)
  }

  /** An agent (re)joins: a fresh sample, and a place in viewSize random agents' samples. */
  join (i: number): void {
    this.markUp(i)
    if (this.full) return
    this.clear(i)
    this.fill(i)
    const k = Math.min(this.config.viewSize, this.up.length - 1)
    const chosen = new Set<number>()
    for (let tries = 0; chosen.size < k && tries < 4 * k + 16; tries++) {
      const j = this.up[this.rng.int(this.up.length)]
      if (j === i || chosen.has(j)) continue
      chosen.add(j)
      const s = this.sample[j]
      if (s.includes(i)) continue
      if (s.length < this.config.viewSize) this.add(j, i)
      else this.replaceAt(j, this.rng.int(s.length), i)
    }
  }

  /** An agent leaves or dies: it hears nothing more. Others keep it in their samples until
   *  their next refresh notices. */
  leave (i: number): void {
    const p = this.upPos[i]
    if (p < 0) return
    const last = this.up.pop()!
    if (last !== i) { this.up[p] = last; this.upPos[last] = p }
    this.upPos[i] = -1
    if (!this.full) this.clear(i)
  }

  /** Periodic refresh of agent i's sample. */
  refresh (i: number): void {
    if (this.full || this.upPos[i] < 0) return
    const s = this.sample[i]
    for (let p = s.length - 1; p >= 0; p--) {
      if (this.upPos[s[p]] >= 0) continue
      const fresh = this.freshPeer(i)
      if (fresh === undefined) this.removeAt(i, p)
      else this.replaceAt(i, p, fresh)
    }
    for (let r = 0; r < this.config.rotate && s.length > 0; r++) {
      const fresh = this.freshPeer(i)
      if (fresh !== undefined) this.replaceAt(i, this.rng.int(s.length), fresh)
    }
    this.fill(i)
  }

  // ---- internals -----------------------------------------------------------------------

  private markUp (i: number): void {
    if (this.upPos[i] >= 0) return
    this.upPos[i] = this.up.length
    this.up.push(i)
  }

  /** tops agent i's sample up to viewSize with distinct random peers */
  private fill (i: number): void {
    const s = this.sample[i]
    const want = Math.min(this.config.viewSize, this.up.length - 1)
    for (let tries = 0; s.length < want && tries < 4 * want + 16; tries++) {
      const fresh = this.freshPeer(i)
      if (fresh !== undefined) this.add(i, fresh)
    }
  }

  /** a random up peer not already in i's sample, or undefined after a few tries */
  private freshPeer (i: number): number | undefined {
    const s = this.sample[i]
    for (let tries = 0; tries < 8; tries++) {
      const j = this.up[this.rng.int(this.up.length)]
      if (j !== i && !s.includes(j)) return j
    }
    return undefined
  }

  private add (i: number, j: number): void {
    this.beforeChange?.(i, undefined, j)
    this.sample[i].push(j)
    this.subscribers[j].add(i)
  }

  private replaceAt (i: number, p: number, j: number): void {
    const s = this.sample[i]
    this.beforeChange?.(i, s[p], j)
    this.subscribers[s[p]].delete(i)
    s[p] = j
    this.subscribers[j].add(i)
  }

  private removeAt (i: number, p: number): void {
    const s = this.sample[i]
    this.beforeChange?.(i, s[p], undefined)
    this.subscribers[s[p]].delete(i)
    s[p] = s[s.length - 1]
    s.pop()
  }

  private clear (i: number): void {
    for (const j of this.sample[i]) {
      this.beforeChange?.(i, j, undefined)
      this.subscribers[j].delete(i)
    }
    this.sample[i] = []
  }
}
