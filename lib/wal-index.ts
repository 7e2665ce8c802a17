// SQLite's wal-index (the `<db>-shm` file), read through SQLite's own descriptor of it, as
// https://www.sqlite.org/walformat.html lays it out. Numbers are in the machine's byte order.
//
// It begins with two copies of a 48-byte header (isInit at 12, mxFrame at 16, nPage at 20, the WAL's salts at 32)
// and the checkpoint information (nBackfill at 96): 136 bytes. Then come blocks of 32 KiB, one per 4096 frames: the
// page number of each frame, then a hash table SQLite searches them with. The first block shares its space with the
// header, so it holds 4062 page numbers. A reader may trust the page numbers of frames up to the mxFrame of the
// header it read: SQLite writes them before it publishes a header that counts them, and does not start the WAL over
// while a reader still needs its frames.
import { endianness } from 'node:os'
import { readFully } from './continuous/wal-file'

const HEADER_BYTES = 48
const IS_INIT = 12
const MX_FRAME = 16
const N_PAGE = 20
/** Where the wal-index header holds the WAL's salts, as the WAL header's own bytes. */
export const WAL_INDEX_SALTS = 32
const N_BACKFILL = 96
const INDEX_HEADER_BYTES = 136
const BLOCK_BYTES = 32 * 1024
const FRAMES_PER_BLOCK = 4096
const FRAMES_IN_FIRST_BLOCK = FRAMES_PER_BLOCK - INDEX_HEADER_BYTES / 4
// Read once: framePages reads a number per frame of the WAL.
const LITTLE_ENDIAN = endianness() === 'LE'

/** The wal-index header, when its two copies agree and it is initialised; undefined otherwise. */
export function walIndexHeader (shm: number): Buffer | undefined {
  const both = Buffer.alloc(2 * HEADER_BYTES)
  if (readFully(shm, both, both.length, 0) < both.length) return undefined
  const first = both.subarray(0, HEADER_BYTES)
  if (first[IS_INIT] !== 1 || !first.equals(both.subarray(HEADER_BYTES))) return undefined
  return first
}

/** The last frame of the WAL's last commit, as the header counts it. */
export function mxFrameOf (header: Buffer): number {
  return uint32(header, MX_FRAME)
}

/** The database's size in pages after that commit. */
export function nPageOf (header: Buffer): number {
  return uint32(header, N_PAGE)
}

/** How many frames of the WAL are already in the database file. */
export function nBackfill (shm: number): number {
  const buffer = Buffer.alloc(4)
  readFully(shm, buffer, 4, N_BACKFILL)
  return uint32(buffer, 0)
}

/** Frames of the WAL that are not in the database file yet (0 when the wal-index is being written). */
export function walBacklog (shm: number): number {
  const header = walIndexHeader(shm)
  if (header === undefined) return 0
  return mxFrameOf(header) - nBackfill(shm)
}

/**
 * Page number → the last frame (1-based, up to `mxFrame`) that holds a version of it: what a reader whose snapshot
 * ends at `mxFrame` reads from the WAL. Undefined when the wal-index is shorter than that or names page 0.
 */
export function framePages (shm: number, mxFrame: number): Map<number, number> | undefined {
  const pages = new Map<number, number>()
  const buffer = Buffer.alloc(FRAMES_PER_BLOCK * 4)
  for (let first = 1, block = 0; first <= mxFrame; block++) {
    const capacity = block === 0 ? FRAMES_IN_FIRST_BLOCK : FRAMES_PER_BLOCK
    const frames = Math.min(capacity, mxFrame - first + 1)
    const at = block === 0 ? INDEX_HEADER_BYTES : block * BLOCK_BYTES
    if (readFully(shm, buffer, frames * 4, at) < frames * 4) return undefined
    for (let i = 0; i < frames; i++) {
      const pgno = uint32(buffer, i * 4)
      if (pgno === 0) return undefined
      pages.set(pgno, first + i)
    }
    first += frames
  }
  return pages
}

function uint32 (buffer: Buffer, at: number): number {
  return LITTLE_ENDIAN ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at)
}
