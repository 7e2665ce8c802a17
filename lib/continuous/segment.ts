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
// buffer each, so memory stays flat whatever the size of a commit or of the file.

import { createHash } from 'node:crypto'
import { closeSync, constants as fsConstants, fdatasyncSync, fstatSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs'
import type { WalPosition } from './position'

/** The first bytes of every segment. The high byte catches 7-bit transfers, the newline line-ending conversion. */
const MAGIC = Buffer.from([0x89, 0x53, 0x51, 0x4c, 0x53, 0x45, 0x47, 0x0a])
export const FORMAT_VERSION = 1
const COMMIT_TAG = 0x434d4954 // "CMIT"
const END_TAG = 0x53454e44 // "SEND"
/** The JSON header holds a chain id and a few numbers; anything near this size is damage, not a header. */
const MAX_HEADER_BYTES = 64 * 1024
const PRELUDE_BYTES = MAGIC.length + 4 + 4
const COMMIT_HEAD_BYTES = 4 + 8 + 4 + 6 * 4 + 4
/** Room for the largest SQLite page (64 KiB) with its page number, read at once. */
const READ_CHUNK_BYTES = 256 * 1024
const WRITE_CHUNK_BYTES = 64 * 1024
const MAX_U32 = 0xffffffff

// O_EXCL refuses anything already at the path, a planted symlink included.
const CREATE_EXCLUSIVE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW

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
function headerProblem (value: unknown): string | undefined {
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

function copyPosition (position: WalPosition): WalPosition {
  const { checkpointSeq, salt1, salt2, frame, checksum } = position
  return { checkpointSeq, salt1, salt2, frame, checksum: [checksum[0], checksum[1]] }
}

function copyHeader (header: SegmentHeader): SegmentHeader {
  return { chain: header.chain, index: header.index, firstCommit: header.firstCommit, pageSize: header.pageSize, from: copyPosition(header.from) }
}

/** Why `commit` cannot be written to a segment of `pageSize` pages, or undefined when it can. */
function commitProblem (commit: SegmentCommit, pageSize: number): string | undefined {
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

/**
 * Writes one segment file. Commits go through a small buffer, frame by frame, so memory stays flat however large a
 * transaction is. The file is complete only after `finish()`; until then it is a partial file that `discard()`
 * removes and that readers refuse.
 */
export class SegmentWriter {
  readonly path: string
  readonly header: SegmentHeader
  private fd: number | undefined
  private state: 'open' | 'failed' | 'finished' | 'discarded' = 'open'
  private readonly buffer = Buffer.allocUnsafe(WRITE_CHUNK_BYTES)
  private readonly scratch = Buffer.alloc(COMMIT_HEAD_BYTES)
  private buffered = 0
  private written = 0
  private readonly hash = createHash('sha256')
  private commitCount = 0
  private pageBytes = 0
  private first: number | undefined
  private last: number | undefined
  private position: WalPosition

  private constructor (path: string, header: SegmentHeader, fd: number) {
    this.path = path
    this.header = header
    this.fd = fd
    this.position = header.from
  }

  /** Creates the file (mode 0600, failing if anything exists at `path`) and writes the magic and the header. */
  static create (path: string, header: SegmentHeader): SegmentWriter {
    const problem = headerProblem(header)
    if (problem !== undefined) throw new TypeError(`Cannot write segment "${path}": ${problem}`)
    const clean = copyHeader(header)
    const json = Buffer.from(JSON.stringify(clean), 'utf8')
    if (json.length > MAX_HEADER_BYTES) throw new RangeError(`Cannot write segment "${path}": its header is ${json.length} bytes, more than ${MAX_HEADER_BYTES}`)
    const writer = new SegmentWriter(path, clean, openSync(path, CREATE_EXCLUSIVE, 0o600))
    const prelude = Buffer.alloc(PRELUDE_BYTES)
    MAGIC.copy(prelude, 0)
    prelude.writeUInt32BE(FORMAT_VERSION, MAGIC.length)
    prelude.writeUInt32BE(json.length, MAGIC.length + 4)
    try {
      writer.put(prelude)
      writer.put(json)
    } catch (err) {
      writer.discard()
      throw err
    }
    return writer
  }

  /** Commits appended. */
  get commits (): number {
    return this.commitCount
  }

  get firstAt (): number | undefined {
    return this.first
  }

  get lastAt (): number | undefined {
    return this.last
  }

  /** The position after the last commit appended, or the header's `from` before any. */
  get lastPosition (): WalPosition {
    return copyPosition(this.position)
  }

  /** Bytes of page data appended (what decides when a segment is big enough to cut). */
  get bytes (): number {
    return this.pageBytes
  }

  /** Size of the file so far, buffered bytes included. */
  get size (): number {
    return this.written + this.buffered
  }

  /**
   * Appends a commit. It is checked whole before a byte is written, so a rejected commit leaves the segment as it
   * was; a failed write leaves the writer unusable (discard it).
   */
  append (commit: SegmentCommit): void {
    this.assertOpen('append to')
    const problem = commitProblem(commit, this.header.pageSize)
    if (problem !== undefined) throw new RangeError(`Cannot append a commit to segment "${this.path}": ${problem}`)
    this.guard(() => {
      const head = this.scratch
      let offset = head.writeUInt32BE(COMMIT_TAG, 0)
      offset = head.writeDoubleBE(commit.at, offset)
      offset = head.writeUInt32BE(commit.dbSize, offset)
      const { checkpointSeq, salt1, salt2, frame, checksum } = commit.position
      for (const value of [checkpointSeq, salt1, salt2, frame, checksum[0], checksum[1]]) offset = head.writeUInt32BE(value, offset)
      head.writeUInt32BE(commit.frames.length, offset)
      this.put(head)
      const pgno = Buffer.alloc(4)
      for (const frame of commit.frames) {
        pgno.writeUInt32BE(frame.pgno, 0)
        this.put(pgno)
        this.put(frame.data)
      }
    })
    this.commitCount++
    this.pageBytes += commit.frames.length * this.header.pageSize
    this.first ??= commit.at
    this.last = commit.at
    this.position = copyPosition(commit.position)
  }

  /** Writes the trailer, flushes the file to disk and closes it. */
  finish (): SegmentSummary {
    this.assertOpen('finish')
    const sha256 = this.guard(() => {
      const trailer = Buffer.alloc(8)
      trailer.writeUInt32BE(END_TAG, 0)
      trailer.writeUInt32BE(this.commitCount, 4)
      this.put(trailer)
      this.flush()
      // The trailer's hash covers every byte before it; the summary's covers the whole file, the hash included.
      const digest = this.hash.copy().digest()
      this.put(digest)
      this.flush()
      fdatasyncSync(this.fd!)
      return this.hash.digest('hex')
    })
    closeSync(this.fd!)
    this.fd = undefined
    this.state = 'finished'
    return {
      path: this.path,
      bytes: this.written,
      sha256,
      commits: this.commitCount,
      firstAt: this.first,
      lastAt: this.last,
      from: copyPosition(this.header.from),
      to: copyPosition(this.position)
    }
  }

  /** Closes and deletes the file, whatever state the writer is in. */
  discard (): void {
    this.closeQuietly()
    this.state = 'discarded'
    try {
      unlinkSync(this.path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }

  private assertOpen (action: string): void {
    if (this.state !== 'open') throw new Error(`Cannot ${action} segment "${this.path}": it is ${this.state}`)
  }

  /** Runs a step that writes to the file; if it throws, the file's content is unknown and the writer is done. */
  private guard<T> (step: () => T): T {
    try {
      return step()
    } catch (err) {
      this.state = 'failed'
      this.closeQuietly()
      throw err
    }
  }

  private closeQuietly (): void {
    if (this.fd === undefined) return
    try {
      closeSync(this.fd)
    } catch {
      // Closing is all that is left to do with this descriptor; a failure here changes nothing.
    }
    this.fd = undefined
  }

  private put (bytes: Buffer): void {
    if (bytes.length > this.buffer.length - this.buffered) this.flush()
    if (bytes.length >= this.buffer.length) {
      this.hash.update(bytes)
      this.writeAll(bytes)
      return
    }
    bytes.copy(this.buffer, this.buffered)
    this.buffered += bytes.length
  }

  private flush (): void {
    if (this.buffered === 0) return
    const chunk = this.buffer.subarray(0, this.buffered)
    this.hash.update(chunk)
    this.writeAll(chunk)
    this.buffered = 0
  }

  private writeAll (bytes: Buffer): void {
    let done = 0
    while (done < bytes.length) {
      done += writeSync(this.fd!, bytes, done, bytes.length - done, this.written + done)
    }
    this.written += bytes.length
  }
}

/**
 * Reads a segment front to back through one buffer, hashing every byte it hands out, and knows how long the file
 * is so that a short file is told apart from a short read.
 */
class SegmentReader {
  readonly hash = createHash('sha256')
  private readonly buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES)
  private start = 0
  private end = 0
  /** File offset of buffer[end]. */
  private filled = 0

  constructor (private readonly fd: number, readonly path: string, readonly size: number) {}

  /** File offset of the next byte to be taken. */
  get offset (): number {
    return this.filled - (this.end - this.start)
  }

  get remaining (): number {
    return this.size - this.offset
  }

  corrupt (reason: string): SegmentCorrupt {
    return new SegmentCorrupt(this.path, reason)
  }

  /** The next `n` bytes (at most the buffer's size): a view valid until the next call. */
  take (n: number, what: string): Buffer {
    if (n > this.remaining) {
      throw this.corrupt(`it is cut short: it ends at byte ${this.size}, inside ${what} at byte ${this.offset} (${n} bytes)`)
    }
    if (this.end - this.start < n) this.fill(n)
    const view = this.buffer.subarray(this.start, this.start + n)
    this.start += n
    this.hash.update(view)
    return view
  }

  private fill (n: number): void {
    this.buffer.copy(this.buffer, 0, this.start, this.end)
    this.end -= this.start
    this.start = 0
    while (this.end < n) {
      const wanted = Math.min(this.buffer.length - this.end, this.size - this.filled)
      const read = readSync(this.fd, this.buffer, this.end, wanted, this.filled)
      if (read === 0) throw this.corrupt(`it shrank to ${this.filled} bytes while being read`)
      this.end += read
      this.filled += read
    }
  }
}

/** Reads the magic, version and header, leaving the reader at the first commit block. */
function readPrelude (reader: SegmentReader): SegmentHeader {
  if (reader.size < MAGIC.length) {
    // Too short for the magic: cut short if what there is of it matches, not a segment otherwise.
    const start = reader.take(reader.size, 'the magic')
    if (start.equals(MAGIC.subarray(0, reader.size))) throw reader.corrupt(`it is cut short: it ends at byte ${reader.size}, inside the magic`)
    throw reader.corrupt('it does not start with the segment magic')
  }
  if (!reader.take(MAGIC.length, 'the magic').equals(MAGIC)) throw reader.corrupt('it does not start with the segment magic')
  const version = reader.take(4, 'the format version').readUInt32BE(0)
  if (version !== FORMAT_VERSION) {
    throw reader.corrupt(`its format version is ${version}; this version of fastify-sqlite-backup reads version ${FORMAT_VERSION} only`)
  }
  const length = reader.take(4, 'the header size').readUInt32BE(0)
  if (length === 0 || length > MAX_HEADER_BYTES) throw reader.corrupt(`its header size ${length} is out of range (1 to ${MAX_HEADER_BYTES})`)
  const json = reader.take(length, 'the header').toString('utf8')
  let header: unknown
  try {
    header = JSON.parse(json)
  } catch {
    throw reader.corrupt('its header is not JSON')
  }
  const problem = headerProblem(header)
  if (problem !== undefined) throw reader.corrupt(problem)
  return copyHeader(header as SegmentHeader)
}

type OnCommit = (commit: StreamedCommit) => void | 'stop'

/**
 * Reads a whole segment, checking everything on the way, and returns what it holds; with `onCommit`, hands each
 * commit to it as it goes (and returns undefined if told to stop). Callers that must not act on a corrupt file
 * read it once without `onCommit` first: the trailer's hash can only be checked at the end.
 */
function readSegment (fd: number, path: string, onCommit?: OnCommit): VerifiedSegment | undefined {
  const reader = new SegmentReader(fd, path, fstatSync(fd).size)
  const header = readPrelude(reader)
  const pageSize = header.pageSize
  let commits = 0
  let firstAt: number | undefined
  let lastAt: number | undefined
  let to = header.from
  for (;;) {
    const blockStart = reader.offset
    const tag = reader.take(4, 'a block tag').readUInt32BE(0)
    if (tag === END_TAG) break
    if (tag !== COMMIT_TAG) throw reader.corrupt(`an unknown block tag 0x${tag.toString(16)} at byte ${blockStart}`)
    const head = reader.take(COMMIT_HEAD_BYTES - 4, 'a commit block\'s header')
    const at = head.readDoubleBE(0)
    const dbSize = head.readUInt32BE(8)
    const position: WalPosition = {
      checkpointSeq: head.readUInt32BE(12),
      salt1: head.readUInt32BE(16),
      salt2: head.readUInt32BE(20),
      frame: head.readUInt32BE(24),
      checksum: [head.readUInt32BE(28), head.readUInt32BE(32)]
    }
    const frameCount = head.readUInt32BE(36)
    const which = `commit ${commits + 1} (at byte ${blockStart})`
    if (!Number.isFinite(at)) throw reader.corrupt(`${which} has no valid time`)
    if (dbSize === 0) throw reader.corrupt(`${which} leaves a database of 0 pages`)
    if (frameCount === 0) throw reader.corrupt(`${which} has no frame`)

    let framesRead = 0
    const framesLeft = (): boolean => framesRead < frameCount
    const readFrame = (): SegmentFrame => {
      const pgno = reader.take(4, 'a frame\'s page number').readUInt32BE(0)
      if (pgno === 0) throw reader.corrupt(`a frame of ${which} is for page 0`)
      const data = reader.take(pageSize, 'a frame\'s page')
      framesRead++
      return { pgno, data }
    }
    if (onCommit !== undefined) {
      let inCallback = true
      let iterated = false
      const frames: Iterable<SegmentFrame> = {
        [Symbol.iterator]: function * () {
          if (iterated) throw new Error('The frames of a commit read from a segment can be iterated once only')
          iterated = true
          for (;;) {
            if (!inCallback) throw new Error('The frames of a commit read from a segment can be read only inside the onCommit callback')
            if (!framesLeft()) return
            yield readFrame()
          }
        }
      }
      const answer = onCommit({ at, position, dbSize, frameCount, frames })
      inCallback = false
      if (answer === 'stop') return undefined
    }
    // Whatever the callback left unread, or every frame when only checking.
    while (framesLeft()) readFrame()
    commits++
    firstAt ??= at
    lastAt = at
    to = position
  }
  const count = reader.take(4, 'the trailer\'s commit count').readUInt32BE(0)
  const content = reader.hash.copy().digest()
  if (!reader.take(32, 'the trailer\'s sha256').equals(content)) {
    throw reader.corrupt('its content does not match the sha256 in its trailer (bytes were changed)')
  }
  if (count !== commits) throw reader.corrupt(`its trailer counts ${count} commits but it holds ${commits}`)
  if (reader.remaining > 0) throw reader.corrupt(`${reader.remaining} bytes follow its trailer`)
  return {
    path,
    bytes: reader.size,
    sha256: reader.hash.digest('hex'),
    commits,
    firstAt,
    lastAt,
    from: copyPosition(header.from),
    to: copyPosition(to),
    header
  }
}

function withFile<T> (path: string, use: (fd: number) => T): T {
  const fd = openSync(path, 'r')
  try {
    return use(fd)
  } finally {
    closeSync(fd)
  }
}

/** The header of a segment, read without checking the rest of the file: for a quick look, not for trusting it. */
export function readSegmentHeader (path: string): SegmentHeader {
  return withFile(path, (fd) => readPrelude(new SegmentReader(fd, path, fstatSync(fd).size)))
}

/** Checks a whole segment (magic, version, structure, trailer hash) and returns what it holds; throws `SegmentCorrupt`. */
export function verifySegment (path: string): VerifiedSegment {
  return withFile(path, (fd) => readSegment(fd, path)!)
}

/**
 * Hands each commit of a segment to `onCommit`, in order, until it returns 'stop'. The whole file is verified
 * first, through the same descriptor, so nothing of a corrupt segment is delivered. Returns what verification read.
 */
export function forEachCommit (path: string, onCommit: OnCommit): VerifiedSegment {
  return withFile(path, (fd) => {
    const verified = readSegment(fd, path)!
    readSegment(fd, path, onCommit)
    return verified
  })
}
