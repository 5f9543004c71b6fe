// Job ids: 16 characters of lowercase Crockford base32, time first so they sort by
// creation and short prefixes are enough in the CLI (like docker's ids).
import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'

export function newJobId (nowMs: number = Date.now()): string {
  let t = nowMs
  let time = ''
  for (let i = 0; i < 9; i++) { time = ALPHABET[t % 32] + time; t = Math.floor(t / 32) }
  const r = randomBytes(7)
  let rand = ''
  for (let i = 0; i < 7; i++) rand += ALPHABET[r[i] % 32]
  return time + rand
}
