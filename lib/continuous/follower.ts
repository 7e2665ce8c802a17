// Runs in the follower's worker thread: reads every committed transaction from the database's WAL, shortly after
// it commits, into a segment file in the staging directory, and keeps SQLite from reusing any frame before it has
// been read. Synchronous by design: the thread has nothing else to do.
import { openSync, closeSync, fstatSync } from 'node:fs'
import { join } from 'node:path'
import { readWalHeader, readCommits, startOf, stillAt, type WalHeader } from './wal-file'
import { SegmentWriter } from './segment-writer'
import type { SegmentSummary } from './segment'
import { sameIncarnation, type WalPosition } from './position'
import { newChainId, type ChainState } from './chain'
import { FollowerConnections } from './follower-connections'

// Read at most this much page data per read call, so that memory stays bounded under a fast writer.
const READ_BATCH_BYTES = 8 << 20
const WAL_HEADER_BYTES = 32
const FRAME_HEADER_BYTES = 24

export interface FollowerSettings {
  databasePath: string
  /** Where segment files are written before they are shipped. */
  spoolDirectory: string
  /** Names this database's spool files (the lease scope), so that they can be told apart from others'. */
  spoolPrefix: string
  /** Past this size the follower checkpoints the WAL itself, so that the next writer starts it over. */
  walSizeLimit: number
}

export interface FollowStart {
  chain: string
  /** True when it carries on the chain it was given; false when it starts a new one (a base snapshot is needed). */
  continued: boolean
  /** Why the chain it was given could not be continued. */
  reason?: string
}

/** A finished segment, ready to ship. */
export interface CutSegment extends SegmentSummary {
  chain: string
  index: number
  /** Number of its last commit in the chain. */
  lastCommit: number
}

export interface TickResult {
  commits: number
  /** Set when the chain broke: what was seen. A new chain has started; it needs a base snapshot. */
  broke?: string
}

/**
 * Follows one database's WAL. Two reader connections take turns holding a read transaction: one is always open,
 * so no writer can start the WAL over (or, when it was opened on a fully checkpointed WAL, no checkpoint can copy
 * a frame that came after it) before this follower has read the frames. At each tick the other reader opens a
 * fresh transaction, the frames committed since the last tick are read, and only then the older one lets go:
 * the app's own checkpoints, which wait for readers, wait for one tick at most.
 */
export class WalFollower {
  private connections: FollowerConnections | undefined
  private held = -1
  private state: ChainState | undefined
  private segment: SegmentWriter | undefined
  private walSize = 0
  private pageSize = 0
  /** No read lock was held for a while: what the WAL held then cannot be vouched for. */
  private unguarded = false

  constructor (private readonly settings: FollowerSettings) {}

  /** The WAL file's size: its largest since SQLite last truncated it (a restart reuses the file from the start). */
  get walBytes (): number {
    return this.walSize
  }

  /** The part of the WAL in use: its header and the frames up to the last commit read. */
  private get walInUse (): number {
    const frame = this.state?.position.frame ?? 0
    return frame === 0 ? 0 : WAL_HEADER_BYTES + frame * (FRAME_HEADER_BYTES + this.pageSize)
  }

  get chain (): ChainState | undefined {
    return this.state && { ...this.state }
  }

  /** Opens the connections and takes the first read lock; carries `resume` on when the WAL still holds its position. */
  start (resume: ChainState | undefined): FollowStart {
    this.open()
    const header = this.readHeader()
    let reason: string | undefined
    if (resume !== undefined) {
      reason = this.continuityProblem(resume.position, header)
      if (reason === undefined) {
        this.state = { ...resume }
        return { chain: resume.chain, continued: true }
      }
    }
    this.state = this.newChain(header)
    return { chain: this.state.chain, continued: false, reason }
  }

  /** Reads what was committed since the last tick, then moves the read lock on. */
  tick (now = Date.now()): TickResult {
    const identity = this.connections!.fileProblem()
    if (identity !== undefined) return this.breakChain(identity)
    if (this.unguarded) return this.breakChain('the follower held no read lock for a moment (it could not take one again after a checkpoint)')
    const previous = this.held
    const next = 1 - previous
    if (!this.connections!.beginRead(next)) return { commits: 0 }
    let result: TickResult
    try {
      result = this.readNew(now)
    } catch (err) {
      // Nothing new was taken in: the older read lock stays, still guarding what was not read.
      this.connections!.endRead(next)
      throw err
    }
    // A break reopened every connection, with a read lock of its own.
    if (result.broke !== undefined) return result
    this.connections!.endRead(previous)
    this.held = next
    if (this.walInUse > this.settings.walSizeLimit) this.checkpoint(now)
    return result
  }

  /** Finishes the open segment, if it holds any commit, and returns it; the next commits go to a new one. */
  cut (): CutSegment | undefined {
    const segment = this.segment
    if (segment === undefined || this.state === undefined) return undefined
    this.segment = undefined
    if (segment.commits === 0) {
      segment.discard()
      return undefined
    }
    const summary = segment.finish()
    const cut = { ...summary, chain: this.state.chain, index: this.state.index, lastCommit: this.state.commits }
    this.state.index++
    return cut
  }

  /** Lets every lock go; the open segment is discarded (what it held is still in the WAL). */
  close (): void {
    this.segment?.discard()
    this.segment = undefined
    this.connections?.close()
    this.connections = undefined
  }

  private open (): void {
    this.connections = new FollowerConnections(this.settings.databasePath)
    const mode = this.connections.readers[0].pragma('journal_mode', { simple: true })
    if (mode !== 'wal') throw Object.assign(new Error(`the database is in ${String(mode)} journal mode`), { code: 'NOT_WAL' })
    if (!this.connections.beginRead(0)) throw new Error('could not open a read transaction on the database')
    this.held = 0
  }

  private readHeader (): WalHeader | undefined {
    const fd = this.openWal()
    if (fd === undefined) return undefined
    try {
      this.walSize = fstatSync(fd).size
      return readWalHeader(fd)
    } finally {
      closeSync(fd)
    }
  }

  /** Why `position` is not where the WAL stands now, or undefined when reading on from it misses nothing. */
  private continuityProblem (position: WalPosition, header: WalHeader | undefined): string | undefined {
    if (header === undefined) return 'the WAL is empty: it was checkpointed and removed or truncated since'
    if (!sameIncarnation(startOf(header), position)) return 'the WAL was started over since'
    const fd = this.openWal()
    if (fd === undefined) return 'the WAL is gone'
    try {
      return stillAt(fd, position) ? undefined : 'the WAL no longer holds the last position shipped'
    } finally {
      closeSync(fd)
    }
  }

  /** A new chain starting where the WAL ends now: what came before is in the base snapshot to come. */
  private newChain (header: WalHeader | undefined): ChainState {
    this.segment?.discard()
    this.segment = undefined
    let position: WalPosition = header === undefined ? emptyPosition() : startOf(header)
    if (header !== undefined) {
      const fd = this.openWal()
      if (fd !== undefined) {
        try {
          for (;;) {
            const read = readCommits(fd, header, position, { maxBytes: READ_BATCH_BYTES })
            if (read.commits.length === 0) break
            position = read.position
          }
        } finally {
          closeSync(fd)
        }
      }
    }
    return { chain: newChainId(), index: 0, commits: 0, position }
  }

  /** Starts a new chain where the WAL ends now: what was read and not cut is dropped (the new base holds it). */
  restartChain (): void {
    this.state = this.newChain(this.readHeader())
  }

  private breakChain (reason: string): TickResult {
    this.close()
    this.open()
    this.unguarded = false
    this.state = this.newChain(this.readHeader())
    return { commits: 0, broke: reason }
  }

  private readNew (now: number): TickResult {
    const state = this.state!
    const fd = this.openWal()
    if (fd === undefined) return { commits: 0 }
    let commits = 0
    try {
      this.walSize = fstatSync(fd).size
      const header = readWalHeader(fd)
      // Empty (a TRUNCATE checkpoint), or a header being written: the next tick sees it.
      if (header === undefined) return { commits: 0 }
      this.pageSize = header.pageSize
      if (!sameIncarnation(startOf(header), state.position)) {
        // Started over, once at most since the last tick, and after every older frame was read: the read lock held
        // since then allowed no more (the header itself cannot tell: a connection that never started the WAL over
        // writes a new one with random salts and a checkpoint count of 0).
        state.position = startOf(header)
      }
      for (;;) {
        const read = readCommits(fd, header, state.position, { maxBytes: READ_BATCH_BYTES })
        if (read.commits.length === 0) break
        for (const commit of read.commits) {
          this.openSegment(header.pageSize).append({ at: now, position: commit.position, dbSize: commit.dbSize, frames: commit.frames })
          state.commits++
        }
        commits += read.commits.length
        state.position = read.position
      }
    } finally {
      closeSync(fd)
    }
    return { commits }
  }

  private openSegment (pageSize: number): SegmentWriter {
    const state = this.state!
    this.segment ??= SegmentWriter.create(
      join(this.settings.spoolDirectory, `.spool-${this.settings.spoolPrefix}-${state.chain}-${state.index}-${process.pid}.seg`),
      { chain: state.chain, index: state.index, pageSize, from: state.position, firstCommit: state.commits + 1 }
    )
    return this.segment
  }

  /**
   * Keeps the WAL bounded. SQLite starts the WAL over only when every frame has been copied into the database and
   * no reader still uses a frame, which under a steady writer with a read lock always held never happens by itself.
   * So: copy what can be copied without holding anyone up, then, holding the write lock for a moment, read the
   * last frames, copy the rest and take the read lock anew on the fully copied WAL: the next writer starts over.
   */
  private checkpoint (now: number): void {
    const { checkpointer, writeLock: lock } = this.connections!
    checkpointer.pragma('wal_checkpoint(PASSIVE)')
    try {
      lock.exec('BEGIN IMMEDIATE')
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return
      throw err
    }
    try {
      // A break reopened every connection (this lock's included): nothing to checkpoint on this pass.
      if (this.readNew(now).broke !== undefined) return
      const reader = this.held
      this.connections!.endRead(reader)
      checkpointer.pragma('wal_checkpoint(PASSIVE)')
      if (!this.connections!.beginRead(reader)) {
        // Frames may be reused before they are read from now on: the next tick starts a new chain.
        this.unguarded = true
        throw new Error('could not take the read lock again after a checkpoint')
      }
    } finally {
      if (lock.open && lock.inTransaction) lock.exec('ROLLBACK')
    }
  }

  private openWal (): number | undefined {
    try {
      return openSync(`${this.settings.databasePath}-wal`, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }
}

/** Before the WAL has any header: the first one that appears starts the chain. */
function emptyPosition (): WalPosition {
  return { checkpointSeq: -1, salt1: 0, salt2: 0, frame: 0, checksum: [0, 0] }
}
