import { fstatSync, readSync } from 'node:fs'
import { sameIncarnation, type WalPosition } from './position'
import { takeBuffer, keepBuffer } from '../kept-buffers'

// A reader of SQLite's write-ahead log (the `<db>-wal` file), as https://www.sqlite.org/fileformat2.html section 4
// describes it. It runs in a worker thread, so it reads with blocking calls on a file descriptor that the caller
// opened (read-only: the WAL belongs to SQLite, which may append to it or start it over while we read).
//
// Layout: a 32-byte header of eight big-endian u32s (magic, format version, page size, checkpoint sequence,
// salt-1, salt-2, checksum-1, checksum-2), then frames of a 24-byte header (page number, database size in pages
// for a commit frame or 0, salt-1, salt-2, checksum-1, checksum-2) followed by the page. A frame is valid when its
// salts are the header's and its checksum is the running checksum: begun on the header's first 24 bytes, carried
// over the first 8 bytes of each frame header and its page. A writer that crashed, a transaction still being
// written or one rolled back all leave frames behind the last commit frame: only whole transactions count.
// With synchronous=FULL on storage without powersafe overwrite, SQLite pads a commit out to a sector boundary by
// repeating its commit frame; each copy then reads as a commit of its own, one frame long, and replays harmlessly.
// (Unix's default VFS claims powersafe overwrite, so Linux WALs have no padding.)

const WAL_HEADER_SIZE = 32
const FRAME_HEADER_SIZE = 24
// Where a frame header holds its salts (salt-1, then salt-2).
const FRAME_SALTS = 8
/** Checksums over little-endian words; what SQLite writes on a little-endian machine. */
const MAGIC_LITTLE_ENDIAN = 0x377f0682
/** Checksums over big-endian words. */
const MAGIC_BIG_ENDIAN = 0x377f0683
const FORMAT_VERSION = 3007000
const MIN_PAGE_SIZE = 512
const MAX_PAGE_SIZE = 65536
// Frames are read in batches of about 1 MiB (at least one frame): few system calls, and a buffer small enough to
// keep for the whole read.
const CHUNK_BYTES = 1024 * 1024

export interface WalHeader {
  pageSize: number
  checkpointSeq: number
  salt1: number
  salt2: number
  /** The header's own checksum, which the first frame's checksum continues. */
  checksum: [number, number]
  /** Magic 0x377f0683: checksums read the data as big-endian words (0x377f0682: little-endian). */
  bigEndianChecksums: boolean
}

export interface WalFrame {
  pgno: number
  /** The page, pageSize bytes; a buffer of its own, not a view of the reader's. */
  data: Buffer
}

export interface WalCommit {
  /** The position just after this transaction's commit frame. */
  position: WalPosition
  /** Size of the database in pages after this commit (the commit frame's field). */
  dbSize: number
  /** Every frame of the transaction, in WAL order (a page written twice appears twice; the later one wins). */
  frames: WalFrame[]
}

/**
 * SQLite's WAL checksum over buffer[start, end) (a multiple of 8 bytes), continuing from `seed`: the data as 32-bit
 * words taken in pairs (x0, x1), s0 += x0 + s1, s1 += x1 + s0, all mod 2^32. The words are assembled from bytes
 * by hand: far faster than a method call per word, and the `| 0` keeps the sums in 32-bit integers (a sum of
 * three of them is exact in a double before the wrap).
 */
export function walChecksum (buffer: Buffer, start: number, end: number, seed: [number, number], bigEndian: boolean): [number, number] {
  if ((end - start) % 8 !== 0 || start < 0 || end > buffer.length) {
    throw new RangeError(`a WAL checksum covers whole 8-byte pairs inside the buffer (got ${start}..${end} of ${buffer.length})`)
  }
  let s0 = seed[0] | 0
  let s1 = seed[1] | 0
  if (bigEndian) {
    for (let i = start; i < end; i += 8) {
      s0 = (s0 + ((buffer[i] << 24) | (buffer[i + 1] << 16) | (buffer[i + 2] << 8) | buffer[i + 3]) + s1) | 0
      s1 = (s1 + ((buffer[i + 4] << 24) | (buffer[i + 5] << 16) | (buffer[i + 6] << 8) | buffer[i + 7]) + s0) | 0
    }
  } else {
    for (let i = start; i < end; i += 8) {
      s0 = (s0 + (buffer[i] | (buffer[i + 1] << 8) | (buffer[i + 2] << 16) | (buffer[i + 3] << 24)) + s1) | 0
      s1 = (s1 + (buffer[i + 4] | (buffer[i + 5] << 8) | (buffer[i + 6] << 16) | (buffer[i + 7] << 24)) + s0) | 0
    }
  }
  return [s0 >>> 0, s1 >>> 0]
}

/**
 * The header, or undefined when the file holds less than a valid header (empty after a TRUNCATE checkpoint,
 * missing, bad magic/version/checksum). SQLite ignores such a WAL the same way, and a page size that is not a
 * power of two from 512 to 65536 too.
 */
export function readWalHeader (fd: number): WalHeader | undefined {
  const buffer = Buffer.alloc(WAL_HEADER_SIZE)
  if (readFully(fd, buffer, WAL_HEADER_SIZE, 0) < WAL_HEADER_SIZE) return undefined
  const magic = buffer.readUInt32BE(0)
  if (magic !== MAGIC_LITTLE_ENDIAN && magic !== MAGIC_BIG_ENDIAN) return undefined
  if (buffer.readUInt32BE(4) !== FORMAT_VERSION) return undefined
  const pageSize = buffer.readUInt32BE(8)
  if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) return undefined
  const bigEndianChecksums = magic === MAGIC_BIG_ENDIAN
  const checksum = walChecksum(buffer, 0, 24, [0, 0], bigEndianChecksums)
  if (checksum[0] !== buffer.readUInt32BE(24) || checksum[1] !== buffer.readUInt32BE(28)) return undefined
  return {
    pageSize,
    checkpointSeq: buffer.readUInt32BE(12),
    salt1: buffer.readUInt32BE(16),
    salt2: buffer.readUInt32BE(20),
    checksum,
    bigEndianChecksums
  }
}

/** The position at the start of the incarnation that `header` begins (frame 0, the header's checksum). */
export function startOf (header: WalHeader): WalPosition {
  return { checkpointSeq: header.checkpointSeq, salt1: header.salt1, salt2: header.salt2, frame: 0, checksum: [header.checksum[0], header.checksum[1]] }
}

/**
 * Reads the transactions committed after `from`, which must be a position in the incarnation `header` describes
 * (same checkpointSeq and salts; throws an Error otherwise). Stops at the first invalid frame, at end of file, or
 * once the frames of the whole transactions read so far total at least `maxBytes` of page data (default: no
 * limit) — but it always returns whole transactions, and at least one transaction if one is there even when it
 * alone exceeds maxBytes: a single transaction is returned whole, so its size bounds the memory this takes, with
 * maxBytes and a 1 MiB read buffer. Returns the commits and the position after the last one (== from when none).
 *
 * `header` may be older than the file: if SQLite started the WAL over since, the frames it wrote carry other
 * salts and reading stops at the first of them.
 */
export function readCommits (fd: number, header: WalHeader, from: WalPosition, options: { maxBytes?: number } = {}): { commits: WalCommit[], position: WalPosition } {
  const start = startOf(header)
  if (!sameIncarnation(from, start)) {
    throw new Error(`the position is in another incarnation of the WAL (checkpoint ${from.checkpointSeq}, salts ${from.salt1}/${from.salt2}; ` +
      `the file's is checkpoint ${header.checkpointSeq}, salts ${header.salt1}/${header.salt2})`)
  }
  if (from.frame === 0 && !sameChecksum(from.checksum, header.checksum)) {
    throw new Error('the position at frame 0 does not carry the WAL header\'s checksum')
  }
  const maxBytes = options.maxBytes ?? Infinity
  const commits: WalCommit[] = []
  let position = from
  let transaction: WalFrame[] = []
  let bytes = 0
  scanFrames(fd, header, from, (frame) => {
    transaction.push({ pgno: frame.pgno, data: Buffer.from(frame.chunk.subarray(frame.at, frame.at + header.pageSize)) })
    if (frame.dbSize === 0) return true
    position = { ...start, frame: frame.frame, checksum: frame.checksum }
    commits.push({ position, dbSize: frame.dbSize, frames: transaction })
    bytes += transaction.length * header.pageSize
    transaction = []
    return bytes < maxBytes
  })
  return { commits, position }
}

/**
 * Reads the page of frame `frame` into `target` at `offset` and returns true, or returns false when that frame no
 * longer carries the salts of `header`'s incarnation (SQLite started the WAL over and wrote it again).
 */
export function readFramePage (fd: number, header: WalHeader, frame: number, target: Buffer, offset: number): boolean {
  const frameSize = header.pageSize + FRAME_HEADER_SIZE
  const frameHeader = Buffer.alloc(FRAME_HEADER_SIZE)
  const at = frameOffset(frame, frameSize)
  if (readFully(fd, frameHeader, FRAME_HEADER_SIZE, at) < FRAME_HEADER_SIZE) return false
  if (!carriesSalts(frameHeader, FRAME_SALTS, header)) return false
  if (readFully(fd, target.subarray(offset, offset + header.pageSize), header.pageSize, at + FRAME_HEADER_SIZE) < header.pageSize) return false
  // Salts are checked again after the page: SQLite writes a frame's header before its page, so a frame rewritten
  // while its page was read shows new salts by now.
  readFully(fd, frameHeader, FRAME_HEADER_SIZE, at)
  return carriesSalts(frameHeader, FRAME_SALTS, header)
}

/**
 * Frame `frame` when it is a commit frame of `header`'s incarnation: the database size in pages it commits and the
 * running checksum it stores. Undefined otherwise (not a commit, other salts, past the end of the file).
 */
export function commitFrameAt (fd: number, header: WalHeader, frame: number): { dbSize: number, checksum: [number, number] } | undefined {
  const frameHeader = Buffer.alloc(FRAME_HEADER_SIZE)
  if (readFully(fd, frameHeader, FRAME_HEADER_SIZE, frameOffset(frame, header.pageSize + FRAME_HEADER_SIZE)) < FRAME_HEADER_SIZE) return undefined
  const dbSize = frameHeader.readUInt32BE(4)
  if (frameHeader.readUInt32BE(0) === 0 || dbSize === 0 || !carriesSalts(frameHeader, FRAME_SALTS, header)) return undefined
  return { dbSize, checksum: [frameHeader.readUInt32BE(16), frameHeader.readUInt32BE(20)] }
}

/** Whether `buffer` holds the salts of `header`'s incarnation at `at` (as two big-endian u32s, as the WAL does). */
export function carriesSalts (buffer: Buffer, at: number, header: WalHeader): boolean {
  return buffer.readUInt32BE(at) === header.salt1 && buffer.readUInt32BE(at + 4) === header.salt2
}

interface ScannedFrame {
  pgno: number
  /** The database size for a commit frame, else 0. */
  dbSize: number
  /** 1-based number of the frame in its incarnation. */
  frame: number
  /** The running checksum after it. */
  checksum: [number, number]
  /** The page is chunk[at, at + pageSize): valid during the visit only. */
  chunk: Buffer
  at: number
}

/**
 * Visits the valid frames after `from` in order, until an invalid frame, the end of the file, or a visit that
 * returns false. A partial frame at the end is one being written (or torn): a later call reads it whole.
 */
function scanFrames (fd: number, header: WalHeader, from: WalPosition, visit: (frame: ScannedFrame) => boolean): void {
  const { pageSize, bigEndianChecksums } = header
  const frameSize = pageSize + FRAME_HEADER_SIZE
  const framesPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / frameSize))
  const chunk = takeBuffer(framesPerChunk * frameSize)
  let frame = from.frame
  let checksum = from.checksum
  let offset = frameOffset(frame + 1, frameSize)
  try {
    for (;;) {
      const got = readFully(fd, chunk, chunk.length, offset)
      const whole = Math.floor(got / frameSize)
      for (let at = 0; at < whole * frameSize; at += frameSize) {
        const pgno = chunk.readUInt32BE(at)
        // SQLite's own recovery also rejects page number 0 (walDecodeFrame), before it looks at the checksum.
        if (pgno === 0 || !carriesSalts(chunk, at + FRAME_SALTS, header)) return
        checksum = walChecksum(chunk, at + FRAME_HEADER_SIZE, at + frameSize, walChecksum(chunk, at, at + 8, checksum, bigEndianChecksums), bigEndianChecksums)
        if (!sameChecksum(checksum, [chunk.readUInt32BE(at + 16), chunk.readUInt32BE(at + 20)])) return
        frame++
        if (!visit({ pgno, dbSize: chunk.readUInt32BE(at + 4), frame, checksum, chunk, at: at + FRAME_HEADER_SIZE })) return
      }
      if (whole < framesPerChunk) return
      offset += whole * frameSize
    }
  } finally {
    keepBuffer(chunk)
  }
}

/**
 * True when `position` still names the same place: the file's header has the same checkpointSeq and salts and the
 * frame at position.frame is still there with that running checksum (frame 0: the header's checksum equals
 * position.checksum). Cheap: it reads the WAL header and that frame's header only. A frame's checksum cannot be
 * verified without its page and the running checksum of the frame before it, so this checks instead that the frame
 * is whole in the file, is a commit frame, carries the header's salts and stores position.checksum. That is enough:
 * SQLite never rewrites a committed frame within an incarnation, and when it starts the WAL over it changes the
 * salts (salt-1 + 1, a random salt-2), so a frame written since cannot carry the old salts, and the stored checksum
 * (64 bits chained over every earlier frame) tells this frame apart from any other.
 */
export function stillAt (fd: number, position: WalPosition): boolean {
  const header = readWalHeader(fd)
  if (header === undefined || !sameIncarnation(position, startOf(header))) return false
  if (position.frame === 0) return sameChecksum(position.checksum, header.checksum)
  const frameSize = header.pageSize + FRAME_HEADER_SIZE
  const at = frameOffset(position.frame, frameSize)
  if (fstatSync(fd).size < at + frameSize) return false
  const commit = commitFrameAt(fd, header, position.frame)
  return commit !== undefined && sameChecksum(commit.checksum, position.checksum)
}

/** Where frame `frame` (1-based) begins in the file. */
function frameOffset (frame: number, frameSize: number): number {
  return WAL_HEADER_SIZE + (frame - 1) * frameSize
}

function sameChecksum (a: [number, number], b: [number, number]): boolean {
  return a[0] === b[0] && a[1] === b[1]
}

/** Reads up to `length` bytes at `position`; fewer only at end of file. (readSync may return less than asked.) */
export function readFully (fd: number, buffer: Buffer, length: number, position: number): number {
  let done = 0
  while (done < length) {
    const read = readSync(fd, buffer, done, length - done, position + done)
    if (read === 0) break
    done += read
  }
  return done
}
