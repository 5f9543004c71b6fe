// Deterministic hashing and a seeded PRNG. No Math.random anywhere in the scheduler:
// every tie-break and sample derives from inputs, so a logged input reproduces a decision.

/** 32-bit FNV-1a of a string. */
export function hash32 (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Rendezvous (highest-random-weight) score of a node for a key. */
export function rendezvous (key: string, node: string): number {
  return rendezvousOfHashes(hash32(key), hash32(node))
}

/** rendezvous() from hash32(key) and hash32(node), for callers that hash each once. */
export function rendezvousOfHashes (keyHash: number, nodeHash: number): number {
  // Mix the two hashes so that nodes sharing prefixes still spread evenly.
  let h = keyHash ^ Math.imul(nodeHash, 0x9e3779b1)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
