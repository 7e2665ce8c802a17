// Reading and checking a segment file (its format: segment.ts).
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import type { WalPosition } from './position'
import { MAGIC, FORMAT_VERSION, COMMIT_TAG, END_TAG, MAX_HEADER_BYTES, COMMIT_HEAD_BYTES, READ_CHUNK_BYTES, SegmentCorrupt, headerProblem, copyPosition, copyHeader, type SegmentHeader, type SegmentFrame, type StreamedCommit, type VerifiedSegment } from './segment'

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
