// A chain: an unbroken run of committed transactions, shipped as numbered segments. It starts when the plugin
// begins to follow a WAL it cannot prove continuous with what it shipped before (first start, a gap while it was
// not running, the file replaced); a snapshot taken while it runs is a base to replay it from.
import { randomBytes } from 'node:crypto'
import type { WalPosition } from './position'

/** Where a chain stands: the next segment's number and the position after the last commit read. */
export interface ChainState {
  chain: string
  /** Number of the next segment to write. */
  index: number
  /** Commits read in this chain so far: the number of the last one. Names a point in the chain exactly. */
  commits: number
  position: WalPosition
}

// wal/<chain>/<index>-<first commit time>-<last commit time>.seg, then .gz / .age as stored.
const SEGMENT_NAME = /^wal\/(\d{8}T\d{9}Z-[0-9a-f]{8})\/(\d{10})-(\d{13})-(\d{13})\.seg(\.gz)?(\.age)?$/

/** A new chain's id: its start time first, so that chains sort in the order they began. */
export function newChainId (now = new Date()): string {
  const time = now.toISOString().replace(/[-:.]/g, '')
  return `${time}-${randomBytes(4).toString('hex')}`
}

/** A stored segment, as its name tells it: no request beyond the listing is needed to plan a restore. */
export interface SegmentRef {
  /** The name under the destination's root (or prefix), with its stored suffixes. */
  name: string
  chain: string
  index: number
  /** When its first and last commits were read from the WAL (ms since the epoch). */
  firstAt: number
  lastAt: number
  compression: 'gzip' | 'none'
  encrypted: boolean
}

/** The name a segment is stored under, before the destination adds its own suffixes. */
export function segmentName (chain: string, index: number, firstAt: number, lastAt: number): string {
  return `wal/${chain}/${String(index).padStart(10, '0')}-${String(firstAt).padStart(13, '0')}-${String(lastAt).padStart(13, '0')}.seg`
}

export function parseSegmentName (name: string): SegmentRef | undefined {
  const match = SEGMENT_NAME.exec(name)
  if (!match) return undefined
  return {
    name,
    chain: match[1],
    index: Number(match[2]),
    firstAt: Number(match[3]),
    lastAt: Number(match[4]),
    compression: match[5] ? 'gzip' : 'none',
    encrypted: match[6] !== undefined
  }
}

/** Segments grouped by chain, each chain in order, chains oldest first. */
export function chainsOf (segments: SegmentRef[]): Map<string, SegmentRef[]> {
  const chains = new Map<string, SegmentRef[]>()
  for (const segment of [...segments].sort((a, b) => a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : a.index - b.index)) {
    const list = chains.get(segment.chain) ?? []
    list.push(segment)
    chains.set(segment.chain, list)
  }
  return chains
}
