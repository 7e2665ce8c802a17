// The copy of a WAL database's snapshot as plain file I/O: the database file's bytes, with the pages the WAL holds
// for that snapshot laid over them, written once, hashed on the way and flushed in small steps. It is what SQLite's
// own checkpoint would leave in the database file, so the copy costs about what copying the file costs, where
// SQLite's backup API (a page at a time through two pagers) costs about three times as much.
//
// Why the result is exactly the snapshot, while others write and checkpoint (the wal-index is the -shm file, as
// https://www.sqlite.org/walformat.html describes it):
// - A read transaction pins the snapshot: every commit up to frame mxFrame of the WAL, none after. Which mxFrame is
//   read from the wal-index header just before and just after the transaction begins: when both reads are the
//   same header (its change counter included), no commit came between, and the snapshot is that header's. No lock
//   is taken from anyone.
// - While the read transaction lasts, a checkpoint copies into the database file only frames up to mxFrame (never
//   past the oldest reader), and the WAL cannot be started over while a reader needs any of its frames. So each
//   page of the file is either the snapshot's version or an older one that a frame up to mxFrame replaces.
// - When every frame was already in the database file (nBackfill == mxFrame), the reader needs none: the file alone
//   is the snapshot, and SQLite lets no checkpoint write to it while such a reader lasts (though the WAL may start
//   over). Should the WAL start over under a copy that reads it anyway, its frames show other salts: the copy says
//   it cannot prove the result, and the caller copies the same pinned snapshot through the backup API.
import { openSync, closeSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { Checksum } from './record'
import { readWalHeader, commitFrameAt, carriesSalts, readFramePage, readFully, type WalHeader } from './continuous/wal-file'
import { walIndexHeader, mxFrameOf, nPageOf, nBackfill, walBacklog, framePages, WAL_INDEX_SALTS } from './wal-index'
import { IoPace, sleepSync } from './io-pace'
import { CopyTarget } from './copy-target'
import { takeBuffer, keepBuffer } from './kept-buffers'
import { borrowDescriptor } from './borrowed-descriptors'
import { beginReadTransaction, retryWhileBusy } from './read-transaction'
import { TaskAborted, type ShouldStop } from './worker/protocol'

// 1 MiB per read: few system calls, one small buffer for a file of any size (written in pieces: file-writes.ts).
const CHUNK_BYTES = 1024 * 1024
// Tries at reading the same wal-index header around the start of the read transaction; each lasts microseconds,
// so only a writer committing without pause makes them all miss (the backup API then copies instead).
const PIN_ATTEMPTS = 50

// SQLite's default wal_autocheckpoint: how many frames in the WAL make a commit checkpoint.
const AUTOCHECKPOINT_FRAMES = 1000
const CHECKPOINT_ATTEMPTS = 20
const CHECKPOINT_RETRY_MS = 0.2

/** The raw copy could not show that its result is the snapshot; the caller copies it another way. */
export class RawCopyUnproven extends Error {
  /** How the error is told apart once it has crossed from a thread (as its message and code). */
  static readonly CODE = 'RAW_COPY_UNPROVEN'
  readonly code = RawCopyUnproven.CODE
}

/** The WAL's part of a pinned snapshot: where each page's version is, up to the snapshot's last commit. */
export interface PinnedWal {
  fd: number
  header: WalHeader
  /** The database's size in pages after the snapshot's last commit. */
  dbSize: number
  /** Page number → the frame (1-based) that holds its version in the snapshot. */
  pages: Map<number, number>
}

/** A snapshot pinned with exactly what the raw copy needs to read it. */
export interface PinnedSnapshot {
  /** SQLite's own descriptor of the database file (see borrowed-descriptors.ts): read, never closed. */
  database: number
  /** SQLite's own descriptor of the wal-index (the -shm file), likewise. */
  shm: number
  /** Undefined when the database file alone holds the snapshot. */
  wal: PinnedWal | undefined
}

/**
 * Begins a read transaction on `source` (always, whatever it returns) and, when it can tell exactly which commit the
 * snapshot ends with, returns what the raw copy needs; undefined otherwise (no /proc, a writer that never pauses, a
 * WAL whose header is not the wal-index's), and the caller copies the snapshot through the backup API.
 */
export async function pinWithWal (databasePath: string, source: Database.Database, shouldStop: ShouldStop): Promise<PinnedSnapshot | undefined> {
  // SQLite maps the wal-index, and keeps its descriptor, from the connection's first read to its close.
  await retryWhileBusy(() => source.pragma('schema_version'), source, shouldStop)
  const shm = borrowDescriptor(`${databasePath}-shm`)
  let header: Buffer | undefined
  for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    const before = shm === undefined ? undefined : walIndexHeader(shm)
    await beginReadTransaction(source, shouldStop)
    if (before === undefined) return undefined
    const after = walIndexHeader(shm!)
    if (after?.equals(before)) {
      header = after
      break
    }
    source.exec('ROLLBACK')
    await yieldToLoop()
  }
  if (header === undefined) {
    await beginReadTransaction(source, shouldStop)
    return undefined
  }
  // Borrowed inside the transaction: its lock keeps every descriptor of the file open until it ends.
  const database = borrowDescriptor(databasePath)
  if (database === undefined) return undefined
  const mxFrame = mxFrameOf(header)
  if (mxFrame === 0 || nBackfill(shm!) === mxFrame) return { database, shm: shm!, wal: undefined }

  let fd: number
  try {
    fd = openSync(`${databasePath}-wal`, 'r')
  } catch {
    return undefined
  }
  const wal = walPages(fd, header, shm!)
  if (wal === undefined) {
    closeSync(fd)
    return undefined
  }
  return { database, shm: shm!, wal }
}

/**
 * Where each page of the snapshot whose wal-index header is `header` is in the WAL, read from the wal-index (a
 * few bytes per frame) rather than from the WAL's frames (a page each): what SQLite's own readers do. Undefined
 * unless the WAL is the one the wal-index describes and its frame mxFrame is the commit the header counts.
 */
function walPages (fd: number, header: Buffer, shm: number): PinnedWal | undefined {
  const walHeader = readWalHeader(fd)
  // The wal-index holds the salts as the WAL header's bytes.
  if (walHeader === undefined || !carriesSalts(header, WAL_INDEX_SALTS, walHeader)) return undefined
  const mxFrame = mxFrameOf(header)
  const dbSize = commitFrameAt(fd, walHeader, mxFrame)?.dbSize
  if (dbSize !== nPageOf(header)) return undefined
  const pages = framePages(shm, mxFrame)
  if (pages === undefined) return undefined
  return { fd, header: walHeader, dbSize, pages }
}

/**
 * Ends the read transaction that pins the snapshot (the caller's COMMIT) and, when the WAL holds an autocheckpoint's
 * worth of frames not yet in the database file, checkpoints them. While the snapshot was pinned, no checkpoint could
 * pass it: every commit made during the copy stayed in the WAL, and the app's first commit after the pin would
 * checkpoint them all (SQLite's autocheckpoint), waiting for their write and fsync, for longer the longer the copy
 * lasted. A PASSIVE checkpoint (it never waits for a reader or a writer) does that work here instead, in the
 * backup's thread; a commit of the app that tries meanwhile finds the checkpoint lock taken and goes on.
 *
 * The race for that lock: while the pin lasted, every commit of the app tried a checkpoint (the WAL being over the
 * autocheckpoint size), holding the lock for a moment each time before finding the pin in its way. So the pin ends
 * right after a checkpoint of our own got the lock, when no attempt of the app's is under way, and the next one
 * follows at once. Returns whether the checkpoint ran. Worker threads only: it may block for a few milliseconds.
 */
export function endPin (source: Database.Database, databasePath: string, shm: number): boolean {
  if (walBacklog(shm) < AUTOCHECKPOINT_FRAMES) {
    source.exec('COMMIT')
    return false
  }
  // A connection of its own: one inside a read transaction cannot checkpoint.
  const checkpointer = new Database(databasePath, { fileMustExist: true })
  try {
    passiveCheckpoint(checkpointer)
    source.exec('COMMIT')
    return passiveCheckpoint(checkpointer)
  } finally {
    checkpointer.close()
  }
}

/** A PASSIVE checkpoint, tried again for a few ms while another connection's holds the lock ("busy"). */
function passiveCheckpoint (db: Database.Database): boolean {
  for (let attempt = 0; attempt < CHECKPOINT_ATTEMPTS; attempt++) {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number }>
    if (result.busy === 0) return true
    sleepSync(CHECKPOINT_RETRY_MS)
  }
  return false
}

/** SQLite takes no lock on the -wal file, so its descriptor may be closed (unlike the database's and the -shm's). */
export function closeWal (snapshot: PinnedSnapshot | undefined): void {
  if (snapshot?.wal !== undefined) closeSync(snapshot.wal.fd)
}

export interface RawCopyJob {
  /** An empty file, created by the caller. */
  tempPath: string
  pageSize: number
  /** The snapshot's size in pages (PRAGMA page_count inside it). */
  pageCount: number
  snapshot: PinnedSnapshot
  /** Bytes per second; undefined: as fast as the disk goes (still flushed in small steps). */
  maxRate: number | undefined
  /**
   * Write around the page cache where the file system allows it (copy-target.ts): for a copy that nothing reads
   * back soon. A copy checked after it is made is not one: quick_check reads it page by page, in b-tree order, and
   * from the disk that took 18 s at 1 GB here, against 0.4 s from the page cache.
   */
  direct?: boolean
}

/**
 * Copies the pinned snapshot into `tempPath`, marked as a rollback-journal database (a single file), hashed as it
 * is written and flushed. Must run while the source's read transaction pins the snapshot. Throws RawCopyUnproven
 * when the WAL no longer holds a frame the snapshot needs, TaskAborted when asked to stop.
 */
export async function copyWalSnapshot (job: RawCopyJob, shouldStop: ShouldStop): Promise<Checksum> {
  const { pageSize, pageCount, snapshot: { database: source, wal } } = job
  if (wal !== undefined) {
    if (wal.header.pageSize !== pageSize) throw new RawCopyUnproven(`the WAL's page size (${wal.header.pageSize}) is not the database's (${pageSize})`)
    if (wal.dbSize !== pageCount) throw new RawCopyUnproven(`the WAL's last commit has ${wal.dbSize} pages, the snapshot ${pageCount}`)
  }
  const pagesPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / pageSize))
  const chunkBytes = pagesPerChunk * pageSize
  // Written directly, a chunk is still being written while the next one is read and hashed: two buffers, on page
  // boundaries. Through the page cache, a chunk is written before the next is read: one buffer, as fresh memory
  // costs a page fault per 4 KiB (a process's first small backup pays for every buffer it takes).
  const buffers = job.direct === true
    ? [takeBuffer(chunkBytes, { pageAligned: true }), takeBuffer(chunkBytes, { pageAligned: true })]
    : [takeBuffer(chunkBytes)]
  const hash = createHash('sha256')
  const pace = new IoPace(job.maxRate)
  const target = new CopyTarget(job.tempPath, { direct: job.direct === true })
  let writing: Promise<void> | undefined
  try {
    for (let first = 1, chunk = 0; first <= pageCount; first += pagesPerChunk, chunk++) {
      if (shouldStop()) throw new TaskAborted()
      const buffer = buffers[chunk % buffers.length]
      const pages = Math.min(pagesPerChunk, pageCount - first + 1)
      const length = pages * pageSize
      const offset = (first - 1) * pageSize
      // Pages past the end of the file exist only in the WAL (the database grew since the last checkpoint).
      const inFile = Math.floor(readFully(source, buffer, length, offset) / pageSize)
      for (let i = 0; i < pages; i++) {
        const frame = wal?.pages.get(first + i)
        if (frame !== undefined) {
          if (!readFramePage(wal!.fd, wal!.header, frame, buffer, i * pageSize)) throw new RawCopyUnproven('the WAL was started over during the copy')
        } else if (i >= inFile) {
          throw new RawCopyUnproven(`page ${first + i} is neither in the database file nor in the WAL`)
        }
      }
      // Bytes 18-19 say "WAL" (2); a backup is a single file, so it says "rollback journal" (1) and opens anywhere.
      if (first === 1 && (buffer[18] === 2 || buffer[19] === 2)) buffer.fill(1, 18, 20)
      hash.update(buffer.subarray(0, length))
      // A direct write goes to the thread pool and overlaps the next chunk's reads and hash (copy-target.ts). A write
      // through the page cache is made here, at this thread's lower CPU priority (worker/priority.ts): it is the
      // kernel copying memory, and handed to the pool (which runs at the app's priority) it raised the p99 of the
      // app's writer in another process to 1.2-1.6x idle during a 1 GB backup, against 0.9-1.1x this way.
      await writing
      writing = target.write(buffer, length, offset)
      // Settled below in every case; until then a failure is not an unhandled rejection.
      writing.catch(() => {})
      await pace.wrote(target.fd, length)
      // Lets the thread's other work run between chunks (the abort message; continuous backup's ticks).
      await yieldToLoop()
    }
    await writing
    await pace.flush(target.fd)
  } finally {
    await writing?.catch(() => {})
    await pace.settle()
    target.close()
    for (const buffer of buffers) keepBuffer(buffer)
  }
  return { sha256: hash.digest('hex'), bytes: pageCount * pageSize }
}
