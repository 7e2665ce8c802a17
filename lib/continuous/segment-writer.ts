// Writing a segment file (its format: segment.ts).
import { createHash } from 'node:crypto'
import { closeSync, fdatasyncSync, openSync, unlinkSync } from 'node:fs'
import { writeAllSync } from '../file-writes'
import type { WalPosition } from './position'
import { MAGIC, FORMAT_VERSION, COMMIT_TAG, END_TAG, MAX_HEADER_BYTES, PRELUDE_BYTES, COMMIT_HEAD_BYTES, WRITE_CHUNK_BYTES, CREATE_EXCLUSIVE, headerProblem, copyPosition, copyHeader, commitProblem, type SegmentHeader, type SegmentCommit, type SegmentSummary } from './segment'

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
    writeAllSync(this.fd!, bytes, bytes.length, this.written)
    this.written += bytes.length
  }
}
