// Replaying segments onto a restored snapshot: each commit's frames are written where SQLite's checkpoint would
// write them, in the same order, and the file is cut or grown to the commit's database size. Done commit after
// commit from the chain's snapshot, this rebuilds the database as it was after any commit of the chain.

import { closeSync, constants as fsConstants, fdatasyncSync, ftruncateSync, openSync, readSync } from 'node:fs'
import { writeAllSync } from '../file-writes'
import type { WalPosition } from './position'
import type { SegmentFrame } from './segment'
import { forEachCommit } from './segment-reader'

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1')
/** Bytes 18 and 19 of the database header: the file format write and read versions (1 rollback journal, 2 WAL). */
const FORMAT_VERSIONS_OFFSET = 18

/** What replaying needs of a commit: a SegmentCommit, or a StreamedCommit read from a segment, fits. */
export interface ReplayableCommit {
  dbSize: number
  frames: Iterable<SegmentFrame>
}

/**
 * Writes one commit into a database file open on `fd`: each frame's page at its place, later frames of a page over
 * earlier ones as in the WAL, then the file's length set to the commit's database size, which drops the pages a
 * shrinking transaction (VACUUM, incremental_vacuum) freed and makes room for the ones a growing one added.
 */
export function applyCommit (fd: number, pageSize: number, commit: ReplayableCommit): void {
  for (const frame of commit.frames) {
    if (frame.data.length !== pageSize) {
      throw new RangeError(`Cannot apply page ${frame.pgno}: it is ${frame.data.length} bytes but the database's pages are ${pageSize} bytes`)
    }
    if (!Number.isInteger(frame.pgno) || frame.pgno < 1) throw new RangeError(`Cannot apply a frame for page ${frame.pgno}`)
    writeAllSync(fd, frame.data, frame.data.length, (frame.pgno - 1) * pageSize)
  }
  ftruncateSync(fd, commit.dbSize * pageSize)
}

/** The page size a database header states (1 stands for 65536), or undefined when it is not a valid one. */
function headerPageSize (header: Buffer): number | undefined {
  const raw = header.readUInt16BE(16)
  const pageSize = raw === 1 ? 65536 : raw
  return pageSize >= 512 && (pageSize & (pageSize - 1)) === 0 ? pageSize : undefined
}

/**
 * Replays commits onto a database file: a restored snapshot, a plain rollback-journal SQLite file that nothing else
 * has open. The file is consistent only after `finish()`; a replay that fails or is closed unfinished leaves a
 * file to throw away.
 */
export class Replay {
  readonly path: string
  readonly pageSize: number
  private fd: number | undefined
  private state: 'open' | 'failed' | 'finished' | 'closed' = 'open'
  private applied = 0
  private position: WalPosition | undefined
  private at: number | undefined

  private constructor (path: string, fd: number, pageSize: number) {
    this.path = path
    this.fd = fd
    this.pageSize = pageSize
  }

  static open (path: string): Replay {
    const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_NOFOLLOW)
    try {
      const header = Buffer.alloc(100)
      const read = readSync(fd, header, 0, header.length, 0)
      const pageSize = read === header.length && header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC) ? headerPageSize(header) : undefined
      if (pageSize === undefined) throw new Error(`Cannot replay onto "${path}": it is not a SQLite database`)
      return new Replay(path, fd, pageSize)
    } catch (err) {
      closeSync(fd)
      throw err
    }
  }

  /** Commits applied so far. */
  get commits (): number {
    return this.applied
  }

  /** The position after the last commit applied: where the next segment must start. */
  get lastPosition (): WalPosition | undefined {
    return this.position
  }

  /** When the last commit applied was read from the WAL: the time the database is restored to. */
  get lastAt (): number | undefined {
    return this.at
  }

  /** Applies one commit. If it fails, the file is half written and the replay is over. */
  apply (commit: ReplayableCommit & { at: number, position: WalPosition }): void {
    if (this.state !== 'open') throw new Error(`Cannot replay onto "${this.path}": the replay is ${this.state}`)
    try {
      applyCommit(this.fd!, this.pageSize, commit)
    } catch (err) {
      this.fail()
      throw err
    }
    this.applied++
    this.position = commit.position
    this.at = commit.at
  }

  /**
   * Applies a segment's commits in order (after verifying the whole segment, so a corrupt one changes nothing),
   * up to the first one `accept` refuses, if any: a restore to a point in time passes a test on `at`.
   * Returns true if every commit was applied, false if it stopped at one that was refused.
   */
  applySegment (segmentPath: string, accept?: (commit: { at: number, position: WalPosition }) => boolean): boolean {
    let complete = true
    forEachCommit(segmentPath, (commit) => {
      if (accept !== undefined && !accept(commit)) {
        complete = false
        return 'stop'
      }
      this.apply(commit)
    })
    return complete
  }

  /**
   * Marks the file rollback-journal again and flushes it. Page 1 replayed from a WAL frame says "WAL" (2) in
   * bytes 18-19; the restored file is a single file with no -wal or -shm beside it, marked 1 as snapshots are, so
   * that it opens anywhere, read-only included.
   */
  finish (): void {
    if (this.state !== 'open') throw new Error(`Cannot finish the replay onto "${this.path}": it is ${this.state}`)
    const fd = this.fd!
    try {
      const versions = Buffer.alloc(2)
      readSync(fd, versions, 0, 2, FORMAT_VERSIONS_OFFSET)
      if (versions[0] === 2 || versions[1] === 2) writeAllSync(fd, Buffer.from([1, 1]), 2, FORMAT_VERSIONS_OFFSET)
      fdatasyncSync(fd)
    } catch (err) {
      this.fail()
      throw err
    }
    closeSync(fd)
    this.fd = undefined
    this.state = 'finished'
  }

  /** Lets the file go without finishing: for a replay given up on. */
  close (): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
    if (this.state === 'open') this.state = 'closed'
  }

  private fail (): void {
    this.state = 'failed'
    try {
      if (this.fd !== undefined) closeSync(this.fd)
    } catch {
      // The error being reported matters more; the descriptor is gone either way.
    }
    this.fd = undefined
  }
}
