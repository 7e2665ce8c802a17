// A segment file: a run of committed transactions read from the WAL, written to ship to backup destinations and
// replayed onto a snapshot at restore. It checks itself: a segment that was cut short, altered or is not a segment
// at all must be refused as a whole, before a single page of it reaches a restored database.
//
// Layout (integers big-endian):
//   magic        8 bytes  \x89 S Q L S E G \n
//   version      u32      FORMAT_VERSION
//   header size  u32, then that many bytes of JSON: { chain, index, firstCommit, pageSize, from }
//   commit block, any number of times:
//     tag        u32      COMMIT_TAG
//     at         f64      when the commit was read from the WAL, ms since the epoch
//     dbSize     u32      database size in pages after the commit
//     position   6 × u32  checkpointSeq, salt1, salt2, frame, checksum[0], checksum[1] after the commit
//     frames     u32      frame count (at least 1), then per frame: pgno u32, pageSize bytes of page data
//   trailer:
//     tag        u32      END_TAG
//     commits    u32      commit block count
//     sha256     32 bytes over every byte before it
// The file ends there: a byte more is corruption too.
//
// Reading and writing are synchronous on file descriptors (both run in worker threads) and go through one small
// buffer each, so memory stays flat whatever the size of a commit or of the file. The writer is in
// segment-writer.ts, the reader in segment-reader.ts; this file holds the format they share.

import { constants as fsConstants } from 'node:fs'
import type { WalPosition } from './position'

/** The first bytes of every segment. The high byte catches 7-bit transfers, the newline line-ending conversion. */
export const MAGIC = Buffer.from([0x89, 0x53, 0x51, 0x4c, 0x53, 0x45, 0x47, 0x0a])
export const FORMAT_VERSION = 1
export const COMMIT_TAG = 0x434d4954 // "CMIT"
export const END_TAG = 0x53454e44 // "SEND"
/** The JSON header holds a chain id and a few numbers; anything near this size is damage, not a header. */
export const MAX_HEADER_BYTES = 64 * 1024
export const PRELUDE_BYTES = MAGIC.length + 4 + 4
export const COMMIT_HEAD_BYTES = 4 + 8 + 4 + 6 * 4 + 4
/** Room for the largest SQLite page (64 KiB) with its page number, read at once. */
export const READ_CHUNK_BYTES = 256 * 1024
export const WRITE_CHUNK_BYTES = 64 * 1024
const MAX_U32 = 0xffffffff

// O_EXCL refuses anything already at the path, a planted symlink included.
export const CREATE_EXCLUSIVE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW

export interface SegmentHeader {
  /** The chain the segment belongs to. */
  chain: string
  /** Its number in the chain. */
  index: number
  /** The number in the chain of its first commit (commits are numbered from 1): tells a gap between segments. */
  firstCommit: number
  /** The database's page size: every frame carries exactly this many bytes. */
  pageSize: number
  /** The position before the first commit: where the previous segment (or the chain's snapshot) left off. */
  from: WalPosition
}

export interface SegmentFrame {
  pgno: number
  data: Buffer
}

/** A committed transaction as written to a segment: a WAL commit and the time it was read. */
export interface SegmentCommit {
  /** When the commit was read from the WAL, ms since the epoch. */
  at: number
  /** The position just after the commit. */
  position: WalPosition
  /** Size of the database in pages after the commit. */
  dbSize: number
  /** The transaction's frames in WAL order; a page may appear more than once, and the last one wins. */
  frames: readonly SegmentFrame[]
}

/**
 * A commit as read back by `forEachCommit`. Its frames are read from the file as they are iterated, so that a
 * commit of any size fits in memory: they can be iterated once, only inside the callback, and each frame's `data`
 * is a view of the reader's buffer that the next frame overwrites (copy it to keep it).
 */
export interface StreamedCommit {
  at: number
  position: WalPosition
  dbSize: number
  frameCount: number
  frames: Iterable<SegmentFrame>
}

/** A finished segment: what a destination ships and records. */
export interface SegmentSummary {
  path: string
  /** Size of the file. */
  bytes: number
  /** sha256 of the whole file, hex. */
  sha256: string
  commits: number
  /** Time of the first and last commit; undefined when the segment holds none. */
  firstAt: number | undefined
  lastAt: number | undefined
  /** The position before the first commit. */
  from: WalPosition
  /** The position after the last commit (`from` when there is none). */
  to: WalPosition
}

export interface VerifiedSegment extends SegmentSummary {
  header: SegmentHeader
}

/** A file that is not a whole, intact segment of a format this code reads. */
export class SegmentCorrupt extends Error {
  readonly path: string
  readonly reason: string

  constructor (path: string, reason: string) {
    super(`Segment file "${path}" is corrupt or not a segment: ${reason}`)
    this.name = 'SegmentCorrupt'
    this.path = path
    this.reason = reason
  }
}

function isU32 (value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_U32
}

/** Why `value` is not a WAL position, or undefined when it is one. */
function positionProblem (value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object'
  const position = value as Partial<WalPosition>
  for (const field of ['checkpointSeq', 'salt1', 'salt2', 'frame'] as const) {
    if (!isU32(position[field])) return `${field} is not a 32-bit unsigned integer`
  }
  const checksum = position.checksum
  if (!Array.isArray(checksum) || checksum.length !== 2 || !isU32(checksum[0]) || !isU32(checksum[1])) {
    return 'checksum is not two 32-bit unsigned integers'
  }
  return undefined
}

/** Why `value` is not a segment header, or undefined when it is one. */
export function headerProblem (value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'the header is not an object'
  const header = value as Partial<SegmentHeader>
  if (typeof header.chain !== 'string' || header.chain === '') return 'the header\'s chain is not a non-empty string'
  if (!Number.isSafeInteger(header.index) || (header.index as number) < 0) return 'the header\'s index is not a non-negative integer'
  if (!Number.isSafeInteger(header.firstCommit) || (header.firstCommit as number) < 1) return 'the header\'s firstCommit is not a positive integer'
  const pageSize = header.pageSize as number
  if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    return 'the header\'s page size is not a power of two from 512 to 65536'
  }
  const problem = positionProblem(header.from)
  return problem === undefined ? undefined : `the header's "from" position: ${problem}`
}

export function copyPosition (position: WalPosition): WalPosition {
  const { checkpointSeq, salt1, salt2, frame, checksum } = position
  return { checkpointSeq, salt1, salt2, frame, checksum: [checksum[0], checksum[1]] }
}

export function copyHeader (header: SegmentHeader): SegmentHeader {
  return { chain: header.chain, index: header.index, firstCommit: header.firstCommit, pageSize: header.pageSize, from: copyPosition(header.from) }
}

/** Why `commit` cannot be written to a segment of `pageSize` pages, or undefined when it can. */
export function commitProblem (commit: SegmentCommit, pageSize: number): string | undefined {
  if (!Number.isFinite(commit.at)) return 'its time "at" is not a finite number'
  if (!isU32(commit.dbSize) || commit.dbSize === 0) return 'its dbSize is not a page count from 1 to 2^32-1'
  const problem = positionProblem(commit.position)
  if (problem !== undefined) return `its position: ${problem}`
  if (commit.frames.length === 0) return 'it has no frame (a WAL commit has at least its commit frame)'
  for (const frame of commit.frames) {
    if (!isU32(frame.pgno) || frame.pgno === 0) return `a frame's page number ${frame.pgno} is not from 1 to 2^32-1`
    if (!Buffer.isBuffer(frame.data) || frame.data.length !== pageSize) {
      return `page ${frame.pgno} is ${frame.data?.length} bytes, not the segment's page size ${pageSize}`
    }
  }
  return undefined
}
